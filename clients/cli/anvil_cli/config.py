"""Contexts: named (registry URL, bundle-worker URL, push-gateway URL, token, default org/project)
sets stored in one JSON file.

The file lives at ``$ANVIL_CONFIG`` (default ``~/.config/anvil/config.json``), mode 0600,
replaced atomically. ``ANVIL_URL``, ``ANVIL_WORKER_URL``, ``ANVIL_GATEWAY_URL``, ``ANVIL_TOKEN``
and ``ANVIL_CONTEXT`` override it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import Failure, UsageProblem

__all__ = [
    "Context",
    "Config",
    "Resolved",
    "config_path",
    "load_config",
    "save_config",
    "resolve",
    "with_defaults",
    "env_flag",
]

DEFAULT_CONTEXT = "default"


@dataclass(frozen=True)
class Context:
    """One stored context. ``allow_http`` records an explicit --insecure-http at login.

    ``worker_url`` is the bundle worker's base URL (a second service, same token): never
    derived from the registry's URL, only set with ``--worker-url`` or ``ANVIL_WORKER_URL``;
    ``gateway_url``, the push gateway's, likewise (``--gateway-url``, ``ANVIL_GATEWAY_URL``).
    """

    url: str
    token: str
    org: str | None = None
    project: str | None = None
    allow_http: bool = False
    worker_url: str | None = None
    gateway_url: str | None = None

    def public(self, name: str, *, current: bool) -> dict[str, Any]:
        """What may be shown: everything but the token."""
        return {
            "name": name,
            "current": current,
            "url": self.url,
            "worker_url": self.worker_url,
            "gateway_url": self.gateway_url,
            "org": self.org,
            "project": self.project,
            "allow_http": self.allow_http,
        }


@dataclass
class Config:
    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"current": self.current, "contexts": {k: asdict(v) for k, v in sorted(self.contexts.items())}}


@dataclass(frozen=True)
class Resolved:
    """The context a command runs with, after environment overrides."""

    name: str | None
    url: str | None
    token: str | None
    org: str | None
    project: str | None
    allow_http: bool
    worker_url: str | None = None
    worker_allow_http: bool = False
    gateway_url: str | None = None
    gateway_allow_http: bool = False


def config_path() -> Path:
    explicit = os.environ.get("ANVIL_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "anvil" / "config.json"


def _context(name: str, raw: Any) -> Context:
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("url"), str)
        or not isinstance(raw.get("token"), str)
    ):
        raise UsageProblem(f"context {name!r} in {config_path()} is malformed; run `anvil login` again")
    for url in ("worker_url", "gateway_url"):
        if raw.get(url) is not None and not isinstance(raw[url], str):
            raise UsageProblem(f"context {name!r} in {config_path()} is malformed; run `anvil login` again")
    fields = ("url", "token", "org", "project", "allow_http", "worker_url", "gateway_url")
    known = {k: raw[k] for k in fields if k in raw}
    return Context(**known)


def load_config(path: Path | None = None) -> Config:
    path = path or config_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config()
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("contexts", {}), dict):
        raise UsageProblem(f"{path} is not an anvil config file")
    contexts = {name: _context(name, value) for name, value in raw.get("contexts", {}).items()}
    current = raw.get("current")
    return Config(current=current if isinstance(current, str) else None, contexts=contexts)


def save_config(config: Config, path: Path | None = None) -> Path:
    """Write atomically with mode 0600: the file holds bearer tokens."""
    path = path or config_path()
    data = json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n"
    try:
        _write_private(path, data)
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _write_private(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp creates the file 0600 from the start, so the tokens are never world-readable,
    # and os.replace swaps it in whole: a crash leaves the old file or the new one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def resolve(config: Config, context_name: str | None) -> Resolved:
    """Pick the context (option, then ANVIL_CONTEXT, then the current one) and apply env overrides."""
    name = context_name or os.environ.get("ANVIL_CONTEXT") or config.current
    stored = config.contexts.get(name) if name else None
    if name and stored is None and (context_name or os.environ.get("ANVIL_CONTEXT")):
        raise UsageProblem(f"no context named {name!r}; see `anvil context list`")
    url = os.environ.get("ANVIL_URL") or (stored.url if stored else None)
    worker_url = os.environ.get("ANVIL_WORKER_URL") or (stored.worker_url if stored else None)
    gateway_url = os.environ.get("ANVIL_GATEWAY_URL") or (stored.gateway_url if stored else None)
    allow_http = env_flag("ANVIL_ALLOW_HTTP")
    return Resolved(
        name=name if stored else None,
        url=url,
        token=os.environ.get("ANVIL_TOKEN") or (stored.token if stored else None),
        org=stored.org if stored else None,
        project=stored.project if stored else None,
        # A login's --insecure-http covers that context's URL only, not an ANVIL_URL override.
        allow_http=allow_http or bool(stored and stored.allow_http and stored.url == url),
        worker_url=worker_url,
        worker_allow_http=allow_http
        or bool(stored and stored.allow_http and worker_url and stored.worker_url == worker_url),
        gateway_url=gateway_url,
        gateway_allow_http=allow_http
        or bool(stored and stored.allow_http and gateway_url and stored.gateway_url == gateway_url),
    )


def with_defaults(
    context: Context,
    *,
    org: str | None,
    project: str | None,
    worker_url: str | None = None,
    gateway_url: str | None = None,
) -> Context:
    """Set (or clear, with an empty string) a context's default org and project and its worker and
    gateway URLs."""
    changes: dict[str, Any] = {}
    if worker_url is not None:
        changes["worker_url"] = worker_url or None
    if gateway_url is not None:
        changes["gateway_url"] = gateway_url or None
    if org is not None:
        changes["org"] = org or None
    if project is not None:
        changes["project"] = project or None
    return replace(context, **changes)
