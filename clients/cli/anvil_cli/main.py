"""Placeholder entry point; filled in by the CLI work."""

import typer

app = typer.Typer(help="Anvil command-line client.")
