"""The command-line interface: `rootless COMMAND ...`."""
