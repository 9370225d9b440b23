"""The cache directory: the client id, the anti-rollback floors, the last-known-good revision.

Every file is written atomically (a temporary file in the same directory, written, fsynced,
renamed over the old one, the directory fsynced), so a crash leaves the old file or the new
one, never half of one. What is read back is never trusted: the last-known-good revision is
verified again before it is served, and a file that cannot be read is refused with one log
line. The floors only grow, updated under an advisory lock so that two processes sharing the
directory cannot lower one another's.

Layout (format ``anvil.runtime-cache.v1``)::

    client_id                         the client's UUID (hello.client_id)
    floors/<environment id>           highest revision applied for that environment
    revisions/<org>.<project>.<env>[.<prompt set>].json   the last-known-good record
    jwks.json                         the registry's keys as last fetched over TLS
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anvil_wire import canonical_json
from anvil_wire.push import Subscription

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, floors still only grow per process
    fcntl = None  # type: ignore[assignment]

__all__ = ["CACHE_FORMAT", "CacheError", "Store", "atomic_write"]

log = logging.getLogger("anvil_runtime")
CACHE_FORMAT = "anvil.runtime-cache.v1"
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_RECORD_BYTES = 256 * 1024 * 1024


class CacheError(Exception):
    """A cache file exists but cannot be used (unreadable, truncated, not the format)."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: write a temporary sibling, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Store:
    """One cache directory (created 0700 on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    # -- client id ---------------------------------------------------------------------------

    def client_id(self) -> str:
        """The client's id, created once; a damaged file is replaced (the fleet sees a new client)."""
        path = self._dir(".") / "client_id"
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError):
            log.warning("replacing the unreadable client id in %s", path)
        else:
            if _UUID_RE.fullmatch(text):
                return text
            log.warning("replacing the unreadable client id in %s", path)
        value = str(uuid.uuid4())
        atomic_write(path, value.encode())
        return value

    # -- anti-rollback floors ------------------------------------------------------------------

    def _floor_path(self, environment_id: str) -> Path:
        if not _UUID_RE.fullmatch(environment_id):
            raise ValueError(f"not an environment id: {environment_id!r}")
        return self._dir("floors") / environment_id

    def floor(self, environment_id: str) -> int:
        """The highest revision applied for ``environment_id`` (0: none); damaged reads as 0 + a warning."""
        path = self._floor_path(environment_id)
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read the revision floor %s: %s", path, exc)
            return 0
        if not text.isdigit():
            log.warning("ignoring the damaged revision floor %s", path)
            return 0
        return int(text)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        with (self._dir("floors") / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def raise_floor(self, environment_id: str, revision: int) -> None:
        """Record that ``revision`` was applied; a floor never goes down."""
        path = self._floor_path(environment_id)
        with self._locked():
            if self.floor(environment_id) < revision:
                atomic_write(path, str(revision).encode())

    # -- last-known-good -----------------------------------------------------------------------

    @staticmethod
    def _record_name(subscription: Subscription) -> str:
        parts = [subscription.organisation, subscription.project, subscription.environment]
        if subscription.prompt_set:
            parts.append(subscription.prompt_set.replace("/", "~"))
        return ".".join(parts) + ".json"

    def lkg_path(self, subscription: Subscription) -> Path:
        return self.root / "revisions" / self._record_name(subscription)

    def load_lkg(self, subscription: Subscription) -> dict[str, Any] | None:
        """The persisted record, None if there is none; CacheError if it cannot be read."""
        record = read_json_file(self.lkg_path(subscription), what="cached revision", missing_ok=True)
        if record is not None and not isinstance(record, dict):
            raise CacheError(f"cached revision {self.lkg_path(subscription)} is not a JSON object")
        return record

    def save_lkg(self, subscription: Subscription, record: dict[str, Any]) -> None:
        self._dir("revisions")
        atomic_write(self.lkg_path(subscription), canonical_json({"format": CACHE_FORMAT, **record}))

    # -- keys ----------------------------------------------------------------------------------

    def load_jwks(self) -> Any:
        try:
            return read_json_file(self.root / "jwks.json", what="cached JWKS", missing_ok=True)
        except CacheError as exc:
            log.warning("%s", exc)
            return None

    def save_jwks(self, document: Any) -> None:
        try:
            atomic_write(self._dir(".") / "jwks.json", canonical_json(document))
        except (OSError, TypeError, ValueError) as exc:
            log.warning("cannot cache the registry's keys in %s: %s", self.root, exc)


def read_json_file(path: Path, *, what: str, missing_ok: bool = False) -> Any:
    """A JSON file's value; CacheError naming the file and the problem if it cannot be used."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise CacheError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise CacheError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_RECORD_BYTES:
        raise CacheError(f"{what} {path} is larger than {MAX_RECORD_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CacheError(f"{what} {path} is not JSON (truncated or damaged?): {exc}") from None
