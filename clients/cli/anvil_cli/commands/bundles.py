"""``anvil export``, ``anvil import`` and ``anvil bundle inspect|verify``.

Export and import go through the bundle worker (the context's ``worker_url``): a job, followed
until it ends, then the bundle download or the import plan. ``bundle inspect`` and ``bundle
verify`` read a bundle file with ``anvil_wire.bundles``, the reference reader the worker uses.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import tempfile
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.text import Text

from anvil_wire import KeyError_, is_prompt_name, is_slug, public_keys_from_jwks
from anvil_wire.bundles import BundleError, Limits, peek_version, read_bundle
from anvil_wire.bundles.archive import read_archive

from ..client import JSON, check_url
from ..config import env_flag
from ..errors import ApiError, Failure, UsageProblem, one_line
from ..output import Column, Printer, short_hash
from ..plans import plural, render_applied, render_plan
from ..progress import Steps, wanted
from ..runtime import DryRunOpt, OrgOpt, OutputOpt, globals_of, runner
from ..worker import WorkerClient, file_chunks, follow_job

__all__ = [
    "bundle_app",
    "export",
    "import_bundle",
    "Strategy",
    "selection_of",
    "parse_overrides",
    "ProgressOpt",
    "TimeoutOpt",
    "inspect",
    "verify",
]

bundle_app = typer.Typer(help="Read and verify bundle files (no registry needed).", no_args_is_help=True)

PEEK_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 600.0


class Strategy(StrEnum):
    fail = "fail"
    skip = "skip"
    overwrite = "overwrite"
    rename = "rename"


ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Show progress on stderr (default: when stderr is a terminal and the output a table).",
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=1, help="Seconds to wait for the worker's job before giving up."),
]
FileArg = Annotated[Path, typer.Argument(help="A bundle file (.anvil).", metavar="FILE")]
StrategyOpt = Annotated[
    Strategy,
    typer.Option(
        "--strategy", case_sensitive=False, help="What to do with conflicts: fail, skip, overwrite, rename."
    ),
]
OverrideOpt = Annotated[
    list[str] | None,
    typer.Option("--override", help="Per-prompt strategy, PROJECT/NAME=STRATEGY (repeatable)."),
]
ProjectSel = Annotated[str | None, typer.Option("--project", help="Select a whole project.")]
PromptSetSel = Annotated[
    str | None, typer.Option("--prompt-set", help="Select a prompt set: PROJECT/SET.", metavar="PROJECT/SET")
]
PromptSel = Annotated[
    list[str] | None,
    typer.Option(
        "--prompt", "-p", help="Select a prompt: PROJECT/NAME (repeatable).", metavar="PROJECT/NAME"
    ),
]
FullHistoryOpt = Annotated[
    bool, typer.Option("--full-history", help="Every version of each prompt (default: the latest).")
]
EnvironmentsOpt = Annotated[
    bool, typer.Option("--environments", help="Include environments and their revisions.")
]


# -- selection and options --------------------------------------------------------------------


def _project_and_name(value: str, option: str, what: str) -> tuple[str, str]:
    project, sep, name = value.partition("/")
    if not sep or not is_slug(project) or not is_prompt_name(name):
        raise UsageProblem(
            f"{option} {value!r}: expected PROJECT/{what.upper()} (a project slug, then a name)"
        )
    return project, name


def selection_of(
    *, whole_org: bool, project: str | None, prompt_set: str | None, prompts: list[str] | None
) -> JSON:
    """The export selection (docs/bundle-format.md 4.1) from exactly one selecting option."""
    given = [flag for flag, value in (("--project", project), ("--prompt-set", prompt_set)) if value]
    if prompts:
        given.append("--prompt")
    if len(given) > 1:
        raise UsageProblem(f"choose one selection: {' and '.join(given)} cannot go together")
    if project:
        if not is_slug(project):
            raise UsageProblem(f"--project {project!r} is not a project slug")
        return {"kind": "project", "project": project, "prompt_set": None, "prompts": None}
    if prompt_set:
        slug, name = _project_and_name(prompt_set, "--prompt-set", "set")
        return {"kind": "prompt_set", "project": slug, "prompt_set": name, "prompts": None}
    if prompts:
        refs = ["/".join(_project_and_name(p, "--prompt", "name")) for p in prompts]
        return {"kind": "prompts", "project": None, "prompt_set": None, "prompts": sorted(set(refs))}
    if whole_org:
        return {"kind": "organisation", "project": None, "prompt_set": None, "prompts": None}
    raise UsageProblem(
        "choose what to export: --org ORG (the whole organisation), --project P, "
        "--prompt-set P/SET or --prompt P/NAME"
    )


def parse_overrides(values: list[str] | None) -> dict[str, str]:
    """``PROJECT/NAME=STRATEGY`` options as ``{"PROJECT/NAME": STRATEGY}``."""
    overrides: dict[str, str] = {}
    for value in values or []:
        key, sep, strategy = value.rpartition("=")
        if not sep:
            raise UsageProblem(f"--override {value!r}: expected PROJECT/NAME=STRATEGY")
        _project_and_name(key, "--override", "name")
        if strategy not in Strategy.__members__:
            raise UsageProblem(
                f"--override {value!r}: unknown strategy {strategy!r}; expected one of "
                + ", ".join(Strategy.__members__)
            )
        if key in overrides:
            raise UsageProblem(f"--override: {key} is given twice")
        overrides[key] = strategy
    return dict(sorted(overrides.items()))


# -- files ------------------------------------------------------------------------------------


def _bundle_error(path: Path, exc: BundleError, what: str = "") -> Failure:
    return Failure(f"{what}{path}: {exc} ({exc.code})")


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from exc


def _limits(size: int) -> Limits:
    """The reference reader's limits, stretched to the file's size (a worker may allow more)."""
    default = Limits()
    return Limits(max_compressed=max(default.max_compressed, size))


def _check_upload(path: Path) -> int:
    """The size of a file that starts like a bundle of a version this CLI reads (nothing sent yet)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(PEEK_BYTES)
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise UsageProblem(f"{path} is not a file")
    try:
        peek_version(head)
    except BundleError as exc:
        raise _bundle_error(path, exc, "not an importable bundle: ") from None
    return size


def _target(file: Path | None) -> Path | None:
    """Where the export goes (None: ``<hex12>.anvil`` here); its directory must exist."""
    if file is None or file.is_dir():
        return None
    if not file.parent.is_dir():
        raise UsageProblem(f"cannot write {file}: {file.parent} is not a directory")
    return file


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _download(worker: WorkerClient, digest: str, path: Path, steps: Steps, size: int | None) -> int:
    """Stream a bundle into a temporary file next to ``path``, check it, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, worker.download_bundle(digest) as response:
            length = response.headers.get("content-length")
            steps.transfer(f"downloading {short_hash(digest)}", int(length) if length else size)
            for chunk in worker.iter_chunks(response):
                out.write(chunk)
                steps.advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        data = Path(tmp).read_bytes()
        try:
            got = read_bundle(data, trust=None, limits=_limits(len(data))).digest
        except BundleError as exc:
            raise Failure(f"the worker sent a broken bundle for {digest}: {exc} ({exc.code})") from None
        if got != digest:
            raise Failure(f"the worker sent bundle {got} for {digest}")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        return len(data)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise Failure(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- export -----------------------------------------------------------------------------------


def export(
    ctx: typer.Context,
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            help="Organisation slug (default: the context's); alone, it selects the whole organisation.",
        ),
    ] = None,
    project: ProjectSel = None,
    prompt_set: PromptSetSel = None,
    prompt: PromptSel = None,
    full_history: FullHistoryOpt = False,
    environments: EnvironmentsOpt = False,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Where to write the bundle (default: ./<digest hex 12>.anvil)."),
    ] = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
    progress: ProgressOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Export an organisation, a project, a prompt set or chosen prompts into a bundle file."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    selection = selection_of(
        whole_org=org is not None, project=project, prompt_set=prompt_set, prompts=prompt
    )
    body = {
        "organisation": run.org,
        "selection": selection,
        "history": "full" if full_history else "latest",
        "environments": environments,
    }
    target = _target(file)
    with run.worker() as worker, Steps(wanted(progress, run.printer)) as steps:
        job = worker.create_export(body, idempotency_key=str(uuid.uuid4()))
        job = follow_job(worker, job, steps=steps, what="exporting", timeout=timeout)
        result = job.get("result") or {}
        digest = str(result.get("bundle", ""))
        if not digest.startswith("sha256:"):
            raise Failure(f"export job {job.get('id')} succeeded without naming its bundle")
        name = f"{digest.removeprefix('sha256:')[:12]}.anvil"
        path = target or ((file or Path.cwd()) / name)
        size = _download(worker, digest, path, steps, result.get("size"))
        steps.done()
    data = {"bundle": digest, "size": size, "file": str(path), "job": job.get("id"), "selection": selection}
    run.printer.show(data, lambda: run.printer.note(f"exported {digest} ({size} bytes) to {path}"))


# -- import -----------------------------------------------------------------------------------


def _confirm(plan: JSON) -> bool:
    """Ask on a terminal (stdin) before writing; the prompt goes to stderr."""
    if not sys.stdin.isatty():
        return True
    return typer.confirm(f"Apply this plan to organisation {plan.get('organisation')}?", err=True)


def _not_applicable(plan: JSON) -> Failure:
    reasons = (plan.get("plan") or {}).get("reasons") or []
    first = f" (first: {one_line(str(reasons[0]), 120)})" if reasons else ""
    return Failure(
        f"the import plan is not applicable: {plural(len(reasons), 'problem')}{first}; "
        "choose --strategy skip, overwrite or rename, or --override PROJECT/NAME=STRATEGY"
    )


def _apply(worker: WorkerClient, plan: JSON, file: Path) -> JSON:
    try:
        return worker.apply_plan(str(plan["id"]))
    except ApiError as exc:
        if exc.type.endswith(":import-target-changed"):
            raise ApiError(
                status=exc.status,
                title="The target changed since the plan was made",
                detail=f"nothing was written; run `anvil import {file}` again to plan against it anew",
                type_=exc.type,
            ) from None
        raise


def import_bundle(
    ctx: typer.Context,
    file: FileArg,
    org: OrgOpt = None,
    strategy: StrategyOpt = Strategy.fail,
    override: OverrideOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan only: print what the import would do and change nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Apply without asking, even on a terminal.")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show each changed prompt's content diff.")] = False,
    output: OutputOpt = None,
    progress: ProgressOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Import a bundle file: upload it, print the plan, then apply it (or stop with --dry-run).

    A dry run discards its plan. Exit 1 when the plan is not applicable (conflicts under
    --strategy fail, dangling references, archived targets: each listed as a problem).
    """
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    printer = run.printer
    overrides = [f"{k}={v}" for k, v in parse_overrides(override).items()]
    # The upload is how a plan is made, so it goes out even in a dry run; only the apply does not.
    with run.worker(dry_run=False) as worker, Steps(wanted(progress, printer)) as steps:
        size = _check_upload(file)
        steps.transfer(f"uploading {file.name}", size)
        job = worker.create_import(
            file_chunks(file, steps),
            size=size,
            organisation=run.org,
            strategy=strategy.value,
            overrides=overrides,
            idempotency_key=str(uuid.uuid4()),
        )
        job = follow_job(worker, job, steps=steps, what="planning the import", timeout=timeout)
        plan_id = (job.get("result") or {}).get("plan")
        if not plan_id:
            raise Failure(f"import job {job.get('id')} succeeded without a plan")
        plan = worker.get_plan(str(plan_id))
        status = plan.get("status")
        if status == "applied":
            # A peer's bundle with auto-apply: the worker applied it as soon as it was planned.
            steps.done()
            if run.dry_run:
                print("warning: the worker applied this plan automatically (peer policy)", file=sys.stderr)
            _show_applied(printer, plan, diff=diff)
            return
        if run.dry_run or not plan.get("applicable"):
            plan = worker.reject_plan(str(plan_id)) if status == "planned" else plan
            steps.done()
            printer.show(plan, lambda: render_plan(printer, plan, diff=diff))
            if not plan.get("applicable"):
                raise _not_applicable(plan)
            printer.note("dry run: nothing was written (the plan was discarded)")
            return
        steps.done()
        if not printer.machine:
            render_plan(printer, plan, diff=diff)
        if plan.get("changes") and not yes and not _confirm(plan):
            worker.reject_plan(str(plan_id))
            raise Failure("not applied: the plan was discarded")
        steps.step("applying the plan")
        applied = _apply(worker, plan, file)
        steps.done()
    printer.show(applied, lambda: render_applied(printer, applied))


def _show_applied(printer: Printer, plan: JSON, *, diff: bool) -> None:
    def render() -> None:
        render_plan(printer, plan, diff=diff)
        render_applied(printer, plan)

    printer.show(plan, render)


# -- bundle inspect | verify --------------------------------------------------------------------


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _unverified_seal(data: bytes) -> JSON | None:
    """The seal's key id, issuer and time, read WITHOUT checking the signature (for display)."""
    try:
        seal = read_archive(data, _limits(len(data))).seal
    except BundleError:
        return None
    if seal is None:
        return None
    try:
        header, payload, _ = seal.decode("ascii").split(".")
        head, body = _b64json(header), _b64json(payload)
    except (ValueError, UnicodeDecodeError):
        return {"verified": False, "kid": None, "issuer": None, "created_at": None, "readable": False}
    if not isinstance(head, dict) or not isinstance(body, dict):
        return {"verified": False, "kid": None, "issuer": None, "created_at": None, "readable": False}
    return {
        "verified": False,
        "kid": head.get("kid"),
        "issuer": body.get("issuer"),
        "created_at": body.get("created_at"),
        "readable": True,
    }


def _selection_text(selection: JSON) -> str:
    kind = selection.get("kind")
    if kind == "project":
        return f"project {selection.get('project')}"
    if kind == "prompt_set":
        return f"prompt set {selection.get('project')}/{selection.get('prompt_set')}"
    if kind == "prompts":
        return "prompts " + ", ".join(selection.get("prompts") or [])
    return "the whole organisation"


def _project_counts(project: JSON) -> JSON:
    prompts = project.get("prompts") or []
    environments = project.get("environments") or []
    return {
        "slug": project.get("slug"),
        "name": project.get("name"),
        "prompts": len(prompts),
        "versions": sum(len(p.get("versions") or []) for p in prompts),
        "prompt_sets": len(project.get("prompt_sets") or []),
        "environments": len(environments),
        "revisions": sum(len(e.get("revisions") or []) for e in environments),
    }


def _description(path: Path, digest: str, size: int, manifest: JSON, seal: JSON | None) -> JSON:
    projects = [_project_counts(p) for p in manifest.get("projects") or []]
    counts = {
        key: sum(int(p[key]) for p in projects)
        for key in ("prompts", "versions", "prompt_sets", "environments", "revisions")
    }
    return {
        "file": str(path),
        "digest": digest,
        "size": size,
        "format": manifest.get("format"),
        "version": manifest.get("version"),
        "exporter": manifest.get("exporter"),
        "selection": manifest.get("selection"),
        "options": manifest.get("options"),
        "organisation": manifest.get("organisation"),
        "counts": {
            "projects": len(projects),
            **counts,
            "objects": len(manifest.get("objects") or []),
            "dependencies": len(manifest.get("dependencies") or []),
        },
        "projects": projects,
        "seal": seal,
    }


CONTENT_WORDS = (
    ("projects", "project"),
    ("prompts", "prompt"),
    ("versions", "version"),
    ("prompt_sets", "prompt set"),
    ("environments", "environment"),
    ("revisions", "revision"),
    ("objects", "object"),
)


def _seal_text(seal: JSON | None, path: Path) -> str:
    if seal is None:
        return "none: the bundle is unsigned; an instance refuses it"
    if not seal.get("readable"):
        return f"present but unreadable (run `anvil bundle verify {path}`)"
    return f"key {seal['kid']}, {seal['created_at']} by {seal['issuer']} (not verified)"


@bundle_app.command("inspect")
def inspect(ctx: typer.Context, file: FileArg, output: OutputOpt = None) -> None:
    """Show what a bundle holds, offline. The structure is checked; the seal is NOT verified."""
    printer = Printer(output or globals_of(ctx).output)
    data = _read_file(file)
    try:
        bundle = read_bundle(data, trust=None, limits=_limits(len(data)))
    except BundleError as exc:
        raise _bundle_error(file, exc, "not a readable bundle: ") from None
    manifest = bundle.manifest
    info = _description(file, bundle.digest, bundle.size, manifest, _unverified_seal(data))

    def render() -> None:
        counts, options = info["counts"], info["options"] or {}
        exporter, organisation = info["exporter"] or {}, info["organisation"] or {}
        fields: list[Column] = [
            ("bundle", "digest"),
            ("file", lambda i: f"{i['file']} ({i['size']} bytes)"),
            ("format", lambda i: f"{i['format']} {i['version']}"),
            ("exporter", lambda i: f"{exporter.get('instance')} ({exporter.get('software')})"),
            ("organisation", lambda i: f"{organisation.get('slug')} ({organisation.get('name')})"),
            ("selection", lambda i: _selection_text(i["selection"] or {})),
            (
                "options",
                lambda i: (
                    f"history {options.get('history')}, "
                    + ("with environments" if options.get("environments") else "no environments")
                ),
            ),
            (
                "contents",
                lambda i: ", ".join(plural(counts[key], word) for key, word in CONTENT_WORDS),
            ),
            ("seal", lambda i: _seal_text(i["seal"], file)),
        ]
        printer.fields(info, fields)
        if info["projects"]:
            columns: list[Column] = [
                ("PROJECT", "slug"),
                ("PROMPTS", "prompts"),
                ("VERSIONS", "versions"),
                ("SETS", "prompt_sets"),
                ("ENVIRONMENTS", "environments"),
                ("REVISIONS", "revisions"),
            ]
            printer.console.print(printer.table(info["projects"], columns))

    printer.show(info, render)


def _fetch_jwks(url: str, allow_http: bool) -> Any:
    base = check_url(url, allow_http=allow_http, what="JWKS URL")
    try:
        response = httpx.get(base, timeout=30, follow_redirects=False, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise Failure(f"cannot fetch the JWKS from {base}: {exc or type(exc).__name__}") from exc
    if response.status_code != 200:
        raise Failure(f"cannot fetch the JWKS from {base}: HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise Failure(f"{base} did not answer a JWKS (JSON)") from exc


def _jwks(source: str | None, issuer: str, allow_http: bool) -> tuple[str, Any]:
    """(where the keys came from, the JWKS): a file, a URL, or the exporter's well-known JWKS."""
    if source is None:
        url = f"{issuer.rstrip('/')}/.well-known/jwks.json"
        return url, _fetch_jwks(url, allow_http)
    if source.startswith(("https://", "http://")):
        return source, _fetch_jwks(source, allow_http)
    try:
        return source, json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"cannot read the JWKS file {source}: {one_line(str(exc), 200)}") from exc


@bundle_app.command("verify")
def verify(
    ctx: typer.Context,
    file: FileArg,
    jwks: Annotated[
        str | None,
        typer.Option(
            "--jwks",
            help="A JWKS URL or file (default: <exporter instance>/.well-known/jwks.json).",
            metavar="URL_OR_FILE",
        ),
    ] = None,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Allow fetching the JWKS over plain http (development).")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Verify a bundle file: its structure and its seal against the exporter's public keys."""
    g = globals_of(ctx)
    printer = Printer(output or g.output)
    data = _read_file(file)
    limits = _limits(len(data))
    try:
        bundle = read_bundle(data, trust=None, limits=limits)
    except BundleError as exc:
        raise _bundle_error(file, exc, "bundle verification failed: ") from None
    issuer = str(bundle.manifest["exporter"]["instance"])
    source, document = _jwks(jwks, issuer, insecure_http or g.insecure_http or env_flag("ANVIL_ALLOW_HTTP"))
    try:
        keys = public_keys_from_jwks(document)
    except KeyError_ as exc:
        raise Failure(f"the JWKS from {source} is not usable: {exc}") from exc

    def trust(seal_issuer: str, kid: str) -> Any:
        return keys.get(kid) if seal_issuer == issuer else None

    try:
        verified = read_bundle(data, trust=trust, limits=limits)
    except BundleError as exc:
        raise _bundle_error(file, exc, "bundle verification failed: ") from None
    seal = verified.seal
    assert seal is not None  # read_bundle with a trust function refuses a bundle without one
    info = {
        "verified": True,
        "file": str(file),
        "bundle": verified.digest,
        "issuer": seal.issuer,
        "kid": seal.kid,
        "created_at": seal.created_at.isoformat().replace("+00:00", "Z"),
        "jwks": source,
    }
    printer.show(
        info,
        lambda: printer.console.print(
            Text(
                f"verified: bundle {info['bundle']} sealed by {info['issuer']} with key {info['kid']} "
                f"at {info['created_at']} (keys from {source})"
            )
        ),
    )
