"""The ``anvil`` command: wiring, global options, and how errors end a run (exit codes 0/1/2)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from . import __version__
from .client import DryRun
from .commands.bundles import bundle_app, export, import_bundle
from .commands.context import context_app, login
from .commands.fleet import fleet
from .commands.peers import peers_app, transfer
from .commands.prompts import prompts_app
from .commands.resources import envs_app, orgs_app, projects_app
from .commands.revisions import config, diff, history, promote, publish, rollback
from .commands.tokens import audit, tokens_app
from .errors import CliError
from .output import Output, dump, error
from .runtime import Globals, OutputOpt

__all__ = ["app"]


def _print_dry_run(dry: DryRun, fmt: Output) -> None:
    described = dry.describe()
    if fmt is not Output.table:
        typer.echo(dump(described, fmt), nl=False)
        return
    console = Console(highlight=False, soft_wrap=True)
    console.print(Text("dry run: nothing was sent", style="bold"))
    console.print(Text(f"{described['method']} {described['url']}"))
    for name, value in described["headers"].items():
        console.print(Text(f"{name}: {value}"))
    if described["body"] is not None:
        console.print(Text(dump(described["body"], Output.json).rstrip()))


class AnvilGroup(TyperGroup):
    """Ends a run on an expected error with one line on stderr, never a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context is private
        try:
            return super().invoke(ctx)
        except DryRun as dry:
            globals_ = ctx.find_object(Globals) or Globals()
            _print_dry_run(dry, globals_.output)
            raise typer.Exit(0) from None
        except CliError as exc:
            error(exc.line())
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=AnvilGroup,
    help="Anvil command-line client: a thin layer over the registry's and the bundle worker's /v1 APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"anvil {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    output: OutputOpt = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Use this stored context (default: ANVIL_CONTEXT, then current)."),
    ] = None,
    insecure_http: Annotated[
        bool,
        typer.Option("--insecure-http", help="Allow plain http to a non-loopback registry (development)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Mutating commands print their request only.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Anvil command-line client."""
    ctx.obj = Globals(
        output=output or Output.table, context=context, insecure_http=insecure_http, dry_run=dry_run
    )


app.command("login")(login)
app.add_typer(context_app, name="context")
app.add_typer(orgs_app, name="orgs")
app.add_typer(projects_app, name="projects")
app.add_typer(envs_app, name="envs")
app.add_typer(prompts_app, name="prompts")
app.command("publish")(publish)
app.command("promote")(promote)
app.command("rollback")(rollback)
app.command("history")(history)
app.command("diff")(diff)
app.command("config")(config)
app.add_typer(tokens_app, name="tokens")
app.command("audit")(audit)
app.command("export")(export)
app.command("import")(import_bundle)
app.add_typer(bundle_app, name="bundle")
app.add_typer(peers_app, name="peers")
app.command("transfer")(transfer)
app.command("fleet")(fleet)
