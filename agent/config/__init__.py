"""agent.json (+ agent.d/*.json) → frozen dataclasses, once; every error names its JSON path.

Every key of the AWS Kinesis Agent is accepted with its default and range, comments are allowed and
numbers/booleans may be strings (as AWS). Unlike AWS, an unknown or misplaced key is an error that
names the nearest valid key. Keys that mean nothing here are accepted with a warning.

The parts: model.py (the dataclasses), schema.py (the key tables), values.py (coercing a value by
its key), flows.py (one flow), loading.py (the files and the global keys), listen.py (listen
addresses), jsonfile.py (reading a file within budgets). Import the names from here.
"""

from __future__ import annotations

from agent.config.loading import load_config, parse_config
from agent.config.model import DEFAULT_CONFIG, DEFAULT_STATE_DIR, MIB, AgentConfig, FlowConfig
from agent.config.schema import FLOW_KEYS, GLOBAL_KEYS, Key

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_STATE_DIR",
    "FLOW_KEYS",
    "GLOBAL_KEYS",
    "MIB",
    "AgentConfig",
    "FlowConfig",
    "Key",
    "load_config",
    "parse_config",
]
