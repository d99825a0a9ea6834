"""The command line: ``kinesis-agent`` and its subcommands, each registered from its own module."""
