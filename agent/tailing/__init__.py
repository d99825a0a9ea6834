"""Finding, identifying and reading the files of a flow."""
