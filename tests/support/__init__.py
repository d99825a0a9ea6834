"""What tests share, one module a job.

- ``agent``: the real agent process: ``start_agent`` / ``stop_agent`` / ``kill_agent``,
  ``running_agent`` (a block with a clean exit), ``run_agent`` / ``run_once`` (a command to its
  end), ``wait_for`` (the one poll-with-deadline; fails with what it waited for and the log's
  tail), ``snapshot_when`` (a status-socket probe), ``agent_env``, RSS sampling.
- ``config``: ``write_config`` and the usual layouts: ``local_config`` (embedded store),
  ``state_config`` / ``obs_config`` (state under tmp/state), ``aws_config`` / ``kinesis_config``;
  ``from_start`` builds a flow.
- ``logs``: what the agent tails: ``numbered`` unique lines, ``append``, ``write_log``, and
  ``Writers`` (files written and rotated live by a thread).
- ``streams``: what arrived: ``stored_lines`` (embedded store), ``kinesis_lines`` (kinesalite).
- ``endpoint``: the in-process Kinesis endpoint on its own thread.
"""
