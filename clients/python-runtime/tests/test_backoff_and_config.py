"""Reconnect backoff (push-protocol.md 5.1), the constructor's checks, the subscription's defaults
from a client token, and the token source (a token or a provider, sync or async)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import revkit

from anvil_runtime import AnvilClient, AnvilError, AsyncAnvilClient, ConfigurationError, NotReadyError
from anvil_runtime._backoff import Backoff
from anvil_runtime._config import Options, TokenSource, subscription_from, token_claims
from anvil_wire import KeySet
from anvil_wire.b64 import b64url_encode
from anvil_wire.push import Subscription

KEYS = KeySet.generate()
TOKEN = revkit.client_token(org="acme", project="web", environment="prod", iss="https://registry.example")

# -- backoff --------------------------------------------------------------------------------------


def test_backoff_bounds_double_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_backoff_reset_starts_again_from_base() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0
    assert [backoff.next_delay() for _ in range(3)] == [0.5, 1.0, 2.0]


def test_backoff_is_full_jitter() -> None:
    assert [Backoff(0.5, 30.0, rng=lambda: 0.0).next_delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    half = Backoff(0.5, 30.0, rng=lambda: 0.5)
    assert [half.next_delay() for _ in range(3)] == [0.25, 0.5, 1.0]


def test_backoff_with_the_default_rng_stays_within_bounds() -> None:
    backoff = Backoff(0.5, 4.0)
    for n in range(200):
        assert 0.0 <= backoff.next_delay() <= min(4.0, 0.5 * 2**n)


def test_backoff_after_very_many_failures_stays_at_the_cap() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 1.0)
    backoff.failures = 10_000
    assert backoff.next_delay() == 30.0


def test_backoff_soon_is_within_base_and_counts_no_failure() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 1.0)
    backoff.next_delay()
    backoff.next_delay()
    assert backoff.soon() == 0.5
    assert backoff.failures == 2
    assert backoff.next_delay() == 2.0


# -- the constructor ------------------------------------------------------------------------------


def make(url: str = "https://gateway.example", **overrides: Any) -> AsyncAnvilClient:
    options: dict[str, Any] = {"token": TOKEN, "public_keys": KEYS.public_jwks()}
    options.update(overrides)
    return AsyncAnvilClient(url, **options)


@pytest.mark.parametrize(
    ("url", "overrides", "says"),
    [
        ("http://gateway.example", {}, "is not TLS"),
        ("ws://gateway.example", {}, "is not TLS"),
        ("ftp://gateway.example", {}, "must be an https://"),
        ("gateway.example", {}, "must be an https://"),
        ("https://", {}, "must be an https://"),
        (
            "https://gateway.example",
            {"registry_url": "http://registry.example", "public_keys": None},
            "is not TLS",
        ),
        ("https://gateway.example", {"registry_url": "https://registry.example"}, "not both"),
        ("https://gateway.example", {"organisation": "Acme!"}, "organisation 'Acme!' is not a slug"),
        ("https://gateway.example", {"project": "-web"}, "project '-web' is not a slug"),
        ("https://gateway.example", {"environment": "prod/eu"}, "is not an environment name"),
        ("https://gateway.example", {"prompt_set": "Bad Set"}, "is not a prompt set name"),
        ("https://gateway.example", {"transport": "carrier-pigeon"}, "transport must be"),
        ("https://gateway.example", {"token": ""}, "token is empty"),
        ("https://gateway.example", {"token": "   "}, "token is empty"),
        ("https://gateway.example", {"token": 42}, "token must be a string or a callable"),
        ("https://gateway.example", {"token": None}, "token must be a string or a callable"),
        ("https://gateway.example", {"backoff_base": 0}, "backoff_base must be a positive number"),
        ("https://gateway.example", {"connect_timeout": -1}, "connect_timeout must be a positive number"),
        ("https://gateway.example", {"backoff_cap": float("nan")}, "backoff_cap must be a positive number"),
        (
            "https://gateway.example",
            {"long_poll_seconds": "30"},
            "long_poll_seconds must be a positive number",
        ),
        ("https://gateway.example", {"labels": {"Bad Key": "x"}}, "labels:"),
        ("https://gateway.example", {"labels": {f"k{i}": "v" for i in range(17)}}, "labels:"),
        ("https://gateway.example", {"public_keys": {"keys": []}}, "public_keys holds no key"),
        ("https://gateway.example", {"public_keys": {"nope": 1}}, "not a usable JWKS"),
    ],
)
def test_constructor_refuses_settings_that_cannot_work(
    url: str, overrides: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        make(url, **overrides)
    assert says in str(error.value)


def test_insecure_urls_are_accepted_only_with_the_flag() -> None:
    client = make("http://127.0.0.1:8080/", allow_insecure=True)
    assert client.state.value == "offline"
    options = client._core.options
    assert options.url == "http://127.0.0.1:8080"
    assert options.stream_url == "ws://127.0.0.1:8080/v1/stream"


def test_wss_url_is_the_https_gateway() -> None:
    options = make("wss://gateway.example/anvil/")._core.options
    assert options.url == "https://gateway.example/anvil"
    assert options.stream_url == "wss://gateway.example/anvil/v1/stream"


def test_public_keys_file_that_cannot_be_read_is_a_configuration_error(tmp_path: Any) -> None:
    missing = tmp_path / "jwks.json"
    with pytest.raises(ConfigurationError, match="cannot read public_keys"):
        make(public_keys=str(missing))


def test_constructor_never_touches_the_network_or_the_disk(tmp_path: Any) -> None:
    cache = tmp_path / "cache"
    client = make("https://unreachable.invalid", cache_dir=cache, bootstrap=tmp_path / "missing.json")
    assert not cache.exists()
    assert client.is_ready is False
    assert client.revision is None


def test_sync_client_refuses_bad_settings_without_starting_a_thread() -> None:
    threads = threading.active_count()
    with pytest.raises(ConfigurationError):
        AnvilClient("http://gateway.example", token=TOKEN, public_keys=KEYS.public_jwks())
    assert threading.active_count() == threads


# -- the subscription -----------------------------------------------------------------------------


def options(**values: Any) -> Options:
    defaults: dict[str, Any] = {
        "cache_dir": None,
        "public_keys": None,
        "registry_url": None,
        "organisation": None,
        "project": None,
        "environment": None,
        "prompt_set": None,
        "bootstrap": None,
        "labels": None,
        "transport": "auto",
        "allow_insecure": False,
        "backoff_base": 0.5,
        "backoff_cap": 30.0,
        "connect_timeout": 10.0,
        "long_poll_seconds": 30.0,
        "jwks_refresh_seconds": 60.0,
        "person_retry_seconds": 300.0,
        "websocket_retry_seconds": 300.0,
    }
    defaults.update(values)
    return Options.build("https://gateway.example", **defaults)


def test_subscription_defaults_come_from_the_client_token_claims() -> None:
    assert subscription_from(options(), TOKEN) == Subscription("acme", "web", "prod")


def test_configured_subscription_wins_over_the_token() -> None:
    configured = options(environment="staging", prompt_set="support")
    assert subscription_from(configured, TOKEN) == Subscription("acme", "web", "staging", "support")


def test_token_claims_are_read_without_verification() -> None:
    assert token_claims(TOKEN)["org"] == "acme"
    assert token_claims("not-a-jwt") == {}
    assert token_claims("a.!!!.c") == {}
    assert token_claims("a." + revkit.client_token().split(".")[1] + ".c") == {}
    list_claims = "a." + b64url_encode(b"[1, 2]") + ".c"
    assert token_claims(list_claims) == {}


@pytest.mark.parametrize(
    ("token", "configured", "missing"),
    [
        ("opaque-token", {}, "no organisation, project, environment to subscribe to"),
        (revkit.client_token(org="acme"), {}, "no project, environment to subscribe to"),
        (revkit.client_token(org="acme", project="web"), {}, "no environment to subscribe to"),
        (revkit.client_token(org="acme", project="web", environment=7), {}, "no environment to subscribe to"),
        ("opaque-token", {"organisation": "acme", "project": "web"}, "no environment to subscribe to"),
    ],
)
def test_subscription_without_an_environment_is_a_configuration_error(
    token: str, configured: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        subscription_from(options(**configured), token)
    assert str(error.value).startswith(missing)


def test_token_limits_that_are_not_a_subscription_are_a_configuration_error() -> None:
    token = revkit.client_token(org="Acme Corp", project="web", environment="prod")
    with pytest.raises(ConfigurationError, match="the token's limits are not a subscription"):
        subscription_from(options(), token)


async def test_client_without_an_environment_is_not_ready_and_says_why() -> None:
    client = make(token="opaque-token")
    with pytest.raises(NotReadyError, match="no organisation, project, environment to subscribe to"):
        await client.wait_until_ready(timeout=0.5)
    assert client.last_error is not None
    await client.close()


def test_jwks_url_comes_from_registry_url_or_the_token_issuer() -> None:
    assert options(registry_url="https://registry.example/").jwks_url(None) == (
        "https://registry.example/.well-known/jwks.json"
    )
    assert options().jwks_url("https://issuer.example") == "https://issuer.example/.well-known/jwks.json"
    assert options().jwks_url(None) is None
    with pytest.raises(ConfigurationError, match="is not TLS"):
        options().jwks_url("http://issuer.example")


# -- the token source -----------------------------------------------------------------------------


async def test_fixed_token_is_returned_as_is_even_when_fresh() -> None:
    source = TokenSource("fixed")
    assert source.is_provider is False
    assert source.current == "fixed"
    assert await source.get() == "fixed"
    assert await source.get(fresh=True) == "fixed"


async def test_sync_provider_is_called_once_then_again_when_fresh() -> None:
    calls: list[str] = []
    loop_thread = threading.get_ident()

    def provider() -> str:
        calls.append(f"token-{len(calls) + 1}")
        assert threading.get_ident() != loop_thread, "a sync provider must not run on the event loop"
        return calls[-1]

    source = TokenSource(provider)
    assert source.is_provider is True
    assert source.current is None
    assert await source.get() == "token-1"
    assert await source.get() == "token-1"
    assert await source.get(fresh=True) == "token-2"
    assert source.current == "token-2"
    assert calls == ["token-1", "token-2"]


async def test_async_provider_is_awaited_once_then_again_when_fresh() -> None:
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return f"token-{calls}"

    source = TokenSource(provider)
    assert await source.get() == "token-1"
    assert await source.get() == "token-1"
    assert await source.get(fresh=True) == "token-2"
    assert calls == 2


async def test_callable_object_returning_an_awaitable_is_awaited() -> None:
    class Provider:
        def __call__(self) -> Any:
            async def token() -> str:
                return "from-awaitable"

            return token()

    assert await TokenSource(Provider()).get() == "from-awaitable"


@pytest.mark.parametrize("value", ["", "  ", None, 42])
async def test_provider_returning_no_token_is_an_error(value: Any) -> None:
    source = TokenSource(lambda: value)
    with pytest.raises(AnvilError, match="the token provider returned no token"):
        await source.get()
    assert source.current is None


async def test_provider_failure_propagates_and_keeps_the_last_token() -> None:
    answers: list[Any] = ["token-1", RuntimeError("vault unreachable")]

    def provider() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    source = TokenSource(provider)
    assert await source.get() == "token-1"
    with pytest.raises(RuntimeError, match="vault unreachable"):
        await source.get(fresh=True)
    assert source.current == "token-1"
