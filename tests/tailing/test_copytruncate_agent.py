"""The real agent process against copytruncate with lines written between the copy and the truncate.

Issue 11's minimal reproduction: 1,000 lines, the agent reads them, ``cp app.log app.log.1``, 5
more lines the agent reads from the live file, ``truncate -s 0 app.log``. The copy is then shorter
than what was read of the file it copies, and every line must still arrive exactly once, also when
the agent is killed (-9) and restarted around the copy and the truncate.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.support.agent import kill_agent, start_agent, stop_agent, wait_for
from tests.support.config import local_flow_config
from tests.support.logs import append, numbered
from tests.support.streams import stored_lines


@pytest.mark.parametrize(
    "restart", ["none", "kill_before_truncate", "truncated_while_down", "kill_after_truncate"]
)
def test_copytruncate_with_lines_after_the_copy_sends_each_line_once(
    tmp_path: Path, restart: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    store = tmp_path / "streams"
    config = local_flow_config(tmp_path, logs / "app.log*", "r", maxBufferAgeMillis=1000)
    live = logs / "app.log"
    agent_log = tmp_path / "agent.log"
    append(live, numbered("line", 1, 1000))

    def stored() -> list[bytes]:
        return stored_lines(store, "r")

    def arrived(last: int) -> None:
        wanted = set(numbered("line", 1, last))
        wait_for(lambda: wanted <= set(stored()), timeout=30, log=agent_log)

    proc = start_agent(config, log=agent_log)
    try:
        arrived(1000)
        shutil.copyfile(live, logs / "app.log.1")
        append(live, numbered("line", 1001, 5))
        arrived(1005)  # the agent read the lines written after the copy from the live file
        if restart == "kill_before_truncate":
            kill_agent(proc)
            proc = start_agent(config, log=agent_log)
        elif restart == "truncated_while_down":
            kill_agent(proc)
        os.truncate(live, 0)
        if restart == "truncated_while_down":
            proc = start_agent(config, log=agent_log)
        elif restart == "kill_after_truncate":
            # the copy is opened once the truncation is noticed; its starting point is committed
            wait_for(lambda: "app.log.1 from offset" in agent_log.read_text(), 30, log=agent_log)
            kill_agent(proc)
            proc = start_agent(config, log=agent_log)
        # refilled after the truncation: once these are in, a copy re-read would be in too (the
        # copy is older, so it is read first)
        append(live, numbered("line", 1006, 5))
        arrived(1010)
    finally:
        if proc.poll() is None:
            assert stop_agent(proc) == 0
    got = stored()
    twice = {line: n for line, n in Counter(got).items() if n > 1}
    assert not twice, f"{len(twice)} lines stored more than once, e.g. {sorted(twice)[:3]}"
    assert sorted(got) == numbered("line", 1, 1010)
