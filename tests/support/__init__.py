"""What tests share, one module a job; nothing here imports a test module.

- ``agent``: the real agent process. ``start_agent`` / ``stop_agent`` / ``kill_agent``;
  ``running_agent`` (a block that must end in a clean exit) and ``shipped_agent`` (the same, once
  a file is shipped); ``run_agent`` / ``run_once`` (a command run to its end); ``spawn_agent_tty``
  (a command on a pseudo-terminal); ``wait_for``, the one way to wait: poll until a deadline,
  then AssertionError naming what was awaited, with the agent log's tail; probes for it
  (``snapshot_when``, ``all_shipped``); ``agent_env``; RSS sampling.
- ``config``: ``write_config`` and the usual layouts, each writing ``tmp/agent.json``:
  ``local_config`` (embedded store), ``state_config`` / ``obs_config`` (state under tmp/state,
  ``state_socket`` its status socket), ``aws_config`` / ``logs_config`` / ``kinesis_config``;
  ``from_start`` builds a flow.
- ``logs``: what the agent tails: ``numbered`` unique lines, ``append``, ``write_log``,
  ``logs_dir``, ``line_records`` (lines as Records, for sinks), and ``Writers`` (files written
  and rotated live by a thread).
- ``streams``: what arrived: ``stored_lines`` / ``stored_so_far`` (embedded store),
  ``kinesis_lines`` / ``kinesis_counts`` (kinesalite).
- ``endpoint``: the in-process Kinesis endpoint on its own thread.
- ``clock``: ``FakeClock``, a clock the test moves by hand.
"""
