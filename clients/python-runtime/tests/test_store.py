"""The cache directory (``Store``, ``atomic_write``) and what the client makes of it at start.

The first half tests the store alone: floors only grow and survive restarts, the client id is
kept, writes are atomic, and a damaged file is refused with its path. The second half starts a
real ``AsyncAnvilClient`` with no gateway to reach (a closed loopback port) from what is on
disk: a damaged, rolled-back or foreign-signed last-known-good revision is refused with one
warning and the bootstrap file (or nothing, honestly) is served instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import revkit
from revkit import ENV_ID, SUBSCRIPTION, Rev, content

from anvil_runtime import AsyncAnvilClient, ClientState, NotReadyError
from anvil_runtime._store import CACHE_FORMAT, CacheError, Store, atomic_write
from anvil_wire import KeySet

LOGGER = "anvil_runtime"


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*.tmp"))


# -- floors ---------------------------------------------------------------------------------------


def test_floor_of_an_unknown_environment_is_zero(tmp_path: Path) -> None:
    assert Store(tmp_path).floor(ENV_ID) == 0


def test_floor_only_grows(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.raise_floor(ENV_ID, 5)
    store.raise_floor(ENV_ID, 3)
    assert store.floor(ENV_ID) == 5
    store.raise_floor(ENV_ID, 5)
    assert store.floor(ENV_ID) == 5
    store.raise_floor(ENV_ID, 8)
    assert store.floor(ENV_ID) == 8
    assert (tmp_path / "floors" / ENV_ID).read_text() == "8"


def test_floor_survives_a_new_store_on_the_same_directory(tmp_path: Path) -> None:
    Store(tmp_path).raise_floor(ENV_ID, 7)
    again = Store(tmp_path)
    assert again.floor(ENV_ID) == 7
    again.raise_floor(ENV_ID, 2)
    assert Store(tmp_path).floor(ENV_ID) == 7


def test_floors_are_per_environment_id(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.raise_floor(ENV_ID, 7)
    assert store.floor(revkit.OTHER_ENV_ID) == 0


@pytest.mark.parametrize("damage", [b"garbage", b"-3", b"", b"\xff\xfe", "٣".encode()])
def test_damaged_floor_reads_as_zero_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes
) -> None:
    store = Store(tmp_path)
    store.raise_floor(ENV_ID, 4)
    path = tmp_path / "floors" / ENV_ID
    path.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert store.floor(ENV_ID) == 0
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert str(path) in caplog.records[0].getMessage()
    store.raise_floor(ENV_ID, 2)
    assert store.floor(ENV_ID) == 2


@pytest.mark.parametrize(
    "environment_id", ["../escape", "", "6F1F0A55-35A3-4F0E-9A56-0C8D8D1C2F10", "x" * 36]
)
def test_floor_of_something_that_is_not_an_environment_id_is_refused(
    tmp_path: Path, environment_id: str
) -> None:
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="not an environment id"):
        store.floor(environment_id)
    with pytest.raises(ValueError, match="not an environment id"):
        store.raise_floor(environment_id, 1)
    assert not (tmp_path / "escape").exists()


# -- client id ------------------------------------------------------------------------------------


def test_client_id_is_created_once_and_kept(tmp_path: Path) -> None:
    first = Store(tmp_path).client_id()
    assert Store(tmp_path).client_id() == first
    assert Store(tmp_path).client_id() == first
    assert (tmp_path / "client_id").read_text() == first
    assert len(first) == 36


@pytest.mark.parametrize("damage", [b"not a uuid", b"\xff\xfe\x00", b""])
def test_damaged_client_id_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes
) -> None:
    (tmp_path / "client_id").write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        replaced = Store(tmp_path).client_id()
    assert replaced.encode() != damage
    # "A file that cannot be read is refused with one log line" (the store's contract).
    assert [r.getMessage() for r in caplog.records] == [
        f"replacing the unreadable client id in {tmp_path / 'client_id'}"
    ]
    assert (tmp_path / "client_id").read_text() == replaced
    assert Store(tmp_path).client_id() == replaced


def test_client_id_of_text_that_is_not_a_uuid_logs_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "client_id").write_text("not a uuid")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        Store(tmp_path).client_id()
    assert [r.getMessage() for r in caplog.records] == [
        f"replacing the unreadable client id in {tmp_path / 'client_id'}"
    ]


def test_cache_directories_and_files_are_private(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    store = Store(root)
    store.client_id()
    store.raise_floor(ENV_ID, 1)
    store.save_lkg(SUBSCRIPTION, {"revision": 1})
    for directory in (root, root / "floors", root / "revisions"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for file in (root / "client_id", root / "floors" / ENV_ID, store.lkg_path(SUBSCRIPTION)):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


# -- atomic writes --------------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    atomic_write(path, b"old")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_atomic_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "record.json"
    atomic_write(path, b"old")

    def boom(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_failed_floor_write_keeps_the_old_floor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    store.raise_floor(ENV_ID, 3)

    def boom(*args: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.raise_floor(ENV_ID, 4)
    monkeypatch.undo()
    assert store.floor(ENV_ID) == 3
    assert temp_files(tmp_path) == []


# -- last-known-good records ----------------------------------------------------------------------


def test_lkg_round_trips_with_its_format(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.load_lkg(SUBSCRIPTION) is None
    store.save_lkg(SUBSCRIPTION, {"revision": 3})
    assert store.load_lkg(SUBSCRIPTION) == {"format": CACHE_FORMAT, "revision": 3}
    assert store.lkg_path(SUBSCRIPTION) == tmp_path / "revisions" / "acme.web.prod.json"


@pytest.mark.parametrize(
    "damage",
    [b'{"format": "anvil.runtime-cache.v1", "revis', b"\x00\x01garbage\xff", b"", b"[" * 100_000],
    ids=["truncated", "garbage", "empty", "deeply-nested"],
)
def test_damaged_lkg_is_a_cache_error_naming_the_file(tmp_path: Path, damage: bytes) -> None:
    store = Store(tmp_path)
    store.save_lkg(SUBSCRIPTION, {"revision": 3})
    path = store.lkg_path(SUBSCRIPTION)
    path.write_bytes(damage)
    with pytest.raises(CacheError) as error:
        store.load_lkg(SUBSCRIPTION)
    assert str(path) in str(error.value)
    assert "not JSON" in str(error.value)


def test_unreadable_lkg_is_a_cache_error_naming_the_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.lkg_path(SUBSCRIPTION)
    path.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(CacheError) as error:
        store.load_lkg(SUBSCRIPTION)
    assert str(path) in str(error.value)


def test_lkg_of_a_prompt_set_has_its_own_file(tmp_path: Path) -> None:
    from anvil_wire.push import Subscription

    store = Store(tmp_path)
    support = Subscription("acme", "web", "prod", prompt_set="support/agents")
    assert store.lkg_path(support).name == "acme.web.prod.support~agents.json"
    assert store.lkg_path(support) != store.lkg_path(SUBSCRIPTION)


# -- the client starting from disk, with no gateway to reach --------------------------------------


KEYS = KeySet.generate()
GREETING = content("Hello {{name}}! {{> shared:footer}}", name=None)
R1 = revkit.revision(1, {"greeting": GREETING}, KEYS.active)
R2 = revkit.revision(2, {"greeting": content("Hi {{name}}! {{> shared:footer}}", name=None)}, KEYS.active)
R3 = revkit.revision(3, {"greeting": content("Hey {{name}}!", name=None)}, KEYS.active)


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def offline_client(closed_url: str, tmp_path: Path) -> AsyncIterator[Callable[..., AsyncAnvilClient]]:
    """``offline_client(**overrides)``: an acme/web/prod client, keys pinned, no gateway to reach."""
    made: list[AsyncAnvilClient] = []

    def make(**overrides: Any) -> AsyncAnvilClient:
        options: dict[str, Any] = {
            "token": revkit.client_token(org="acme", project="web", environment="prod"),
            "public_keys": KEYS.public_jwks(),
            "cache_dir": tmp_path / "cache",
            "allow_insecure": True,
            "transport": "websocket",
            "backoff_base": 0.05,
            "backoff_cap": 0.2,
            "connect_timeout": 2.0,
        }
        options.update(overrides)
        client = AsyncAnvilClient(closed_url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close(timeout=5)


async def first_attempt_failed(client: AsyncAnvilClient) -> None:
    """Start the client and wait for its first connection attempt to fail (no wall-clock asserts)."""
    await client.start()
    async with asyncio.timeout(10):
        while client.last_error is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and "cache" in r.getMessage()
    ]


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage\xff" * 10)


def _members_missing(path: Path) -> None:
    path.write_text('{"format": "anvil.runtime-cache.v1", "revision": 2}')


def _content_tampered(path: Path) -> None:
    record = revkit.lkg_record(revkit.altered_content(R2, R2.digest_of_prompt("greeting"), content("Pwned")))
    Store(path.parents[1]).save_lkg(SUBSCRIPTION, record)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_truncated, "not JSON"),
        (_garbage, "not JSON"),
        (_members_missing, "is damaged"),
        (_content_tampered, "does not match its digest"),
    ],
    ids=["truncated", "garbage", "members-missing", "content-tampered"],
)
async def test_damaged_lkg_logs_one_warning_and_the_bootstrap_is_served(
    offline_client: Callable[..., AsyncAnvilClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    says: str,
) -> None:
    lkg = revkit.write_lkg(tmp_path / "cache", R2)
    damage(lkg)
    bootstrap = revkit.write_bootstrap(tmp_path / "bootstrap.json", R1)
    caplog.set_level(logging.INFO, logger=LOGGER)
    client = offline_client(bootstrap=bootstrap)
    assert await client.wait_until_ready(timeout=10) is ClientState.STALE
    prompt = client.get_prompt("greeting")
    assert (prompt.source, prompt.revision) == ("bootstrap", 1)
    assert prompt.render(name="Ada") == "Hello Ada! Bye from Acme support"
    warnings = cache_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("not serving the cache revision")
    assert says in warnings[0]
    if damage is not _content_tampered:
        assert str(lkg) in warnings[0]
    # The bootstrap revision is persisted as the new last-known-good.
    record = Store(tmp_path / "cache").load_lkg(SUBSCRIPTION)
    assert record is not None
    assert (record["revision"], record["manifest_digest"]) == (1, R1.digest)


async def test_valid_lkg_is_served_before_the_bootstrap(
    offline_client: Callable[..., AsyncAnvilClient], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    revkit.write_lkg(tmp_path / "cache", R2)
    bootstrap = revkit.write_bootstrap(tmp_path / "bootstrap.json", R3)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    client = offline_client(bootstrap=bootstrap)
    assert await client.wait_until_ready(timeout=10) is ClientState.STALE
    prompt = client.get_prompt("greeting")
    assert (prompt.source, prompt.revision) == ("cache", 2)
    assert prompt.render(name="Ada") == "Hi Ada! Bye from Acme support"
    assert cache_warnings(caplog) == []


@pytest.mark.parametrize(("floor", "served"), [(1, True), (2, True), (3, False)])
async def test_lkg_below_the_persisted_floor_is_refused(
    offline_client: Callable[..., AsyncAnvilClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    floor: int,
    served: bool,
) -> None:
    revkit.write_lkg(tmp_path / "cache", R2)
    Store(tmp_path / "cache").raise_floor(ENV_ID, floor)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    client = offline_client()
    await first_attempt_failed(client)
    if served:
        assert client.get_prompt("greeting").revision == 2
        assert cache_warnings(caplog) == []
        return
    assert not client.is_ready
    with pytest.raises(NotReadyError) as error:
        client.get_prompt("greeting")
    assert "cache: refused: revision 2 is below revision 3" in str(error.value)
    assert cache_warnings(caplog) == [
        "not serving the cache revision: revision 2 is below revision 3, applied before"
    ]


async def test_bootstrap_below_the_persisted_floor_is_refused(
    offline_client: Callable[..., AsyncAnvilClient], tmp_path: Path
) -> None:
    Store(tmp_path / "cache").raise_floor(ENV_ID, 2)
    client = offline_client(bootstrap=revkit.write_bootstrap(tmp_path / "bootstrap.json", R1))
    await first_attempt_failed(client)
    with pytest.raises(NotReadyError, match="bootstrap: refused: revision 1 is below revision 2"):
        client.get_prompt("greeting")


async def test_lkg_signed_by_an_unknown_key_is_refused(
    offline_client: Callable[..., AsyncAnvilClient], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    attacker = KeySet.generate()
    revkit.write_lkg(tmp_path / "cache", revkit.signed_as(R2, attacker.active))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    client = offline_client()
    await first_attempt_failed(client)
    assert client.state is ClientState.OFFLINE
    with pytest.raises(NotReadyError) as error:
        client.get_prompt("greeting")
    assert f"unknown key id {attacker.active.kid!r}" in str(error.value)
    assert len(cache_warnings(caplog)) == 1


async def test_lkg_of_another_environment_is_refused(
    offline_client: Callable[..., AsyncAnvilClient], tmp_path: Path
) -> None:
    staging = revkit.revision(5, {"greeting": GREETING}, KEYS.active, environment="staging")
    # Saved under prod's file name, as a swapped file would be.
    revkit.write_lkg(tmp_path / "cache", staging)
    client = offline_client()
    await first_attempt_failed(client)
    with pytest.raises(NotReadyError, match="signed for acme/web/staging"):
        client.get_prompt("greeting")


async def test_bootstrap_signed_by_an_unknown_key_is_refused(
    offline_client: Callable[..., AsyncAnvilClient], tmp_path: Path
) -> None:
    forged = revkit.signed_as(R1, KeySet.generate().active)
    client = offline_client(bootstrap=revkit.write_bootstrap(tmp_path / "bootstrap.json", forged))
    await first_attempt_failed(client)
    with pytest.raises(NotReadyError, match=r"bootstrap: refused: .*unknown key id"):
        client.get_prompt("greeting")


async def test_nothing_to_serve_is_not_ready_with_every_reason_and_fallback_works(
    offline_client: Callable[..., AsyncAnvilClient], closed_url: str, tmp_path: Path
) -> None:
    client = offline_client()
    with pytest.raises(NotReadyError) as error:
        await client.wait_until_ready(timeout=1)
    message = str(error.value)
    assert f"gateway {closed_url}: cannot connect to ws://127.0.0.1:" in message
    assert f"cache: nothing cached in {tmp_path / 'cache'}" in message
    assert "bootstrap: no bootstrap file configured" in message
    assert client.state is ClientState.OFFLINE
    assert not client.is_ready
    assert client.revision is None
    prompt = client.get_prompt("greeting", fallback="Hi {{name}}")
    assert prompt.source == "fallback"
    assert (prompt.revision, prompt.version, prompt.content_hash) == (None, None, None)
    assert prompt.render(name="Ada") == "Hi Ada"


async def test_missing_bootstrap_file_is_named_in_the_not_ready_error(
    offline_client: Callable[..., AsyncAnvilClient], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "bootstrap.json"
    client = offline_client(bootstrap=missing, cache_dir=None)
    await first_attempt_failed(client)
    with pytest.raises(NotReadyError) as error:
        client.get_prompt("greeting")
    assert f"bootstrap: refused: bootstrap file {missing} does not exist" in str(error.value)
    assert "cache: no cache_dir configured" in str(error.value)


async def test_bootstrap_start_leaves_no_temporary_files(
    offline_client: Callable[..., AsyncAnvilClient], tmp_path: Path
) -> None:
    client = offline_client(bootstrap=revkit.write_bootstrap(tmp_path / "bootstrap.json", R2))
    assert await client.wait_until_ready(timeout=10) is ClientState.STALE
    assert Store(tmp_path / "cache").floor(ENV_ID) == 2
    assert temp_files(tmp_path) == []
    assert os.listdir(tmp_path / "cache" / "revisions") == ["acme.web.prod.json"]


def test_rev_helpers_are_consistent() -> None:
    # The fixtures above rely on these: a revision document verifies and names its digest.
    assert isinstance(R2, Rev)
    assert revkit.applied(R2, KEYS.public_keys()).manifest_digest == R2.digest
