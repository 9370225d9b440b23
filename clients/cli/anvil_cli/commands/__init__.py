"""The command groups; ``anvil_cli.main`` wires them into one ``anvil`` command."""
