"""``Prompt``: frozen, read-only content, rendering with partials and defaults, clear errors; and
the per-call ``fallback=`` prompts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import revkit
from revkit import content

from anvil_runtime import AsyncAnvilClient, NotReadyError, Prompt, RenderError
from anvil_runtime._prompt import fallback_prompt
from anvil_wire import KeySet

KEYS = KeySet.generate()
GREETING = content("Hello {{name}}! {{> shared:footer}}", name=None)
WELCOME = content("{{salutation}} {{name}}, from {{> team}}", salutation="Hello", name=None)
TEAM = content("Team {{team}}", team="Acme")
CHAT = content(
    [
        {"role": "system", "content": "You help {{company}} customers. {{> team}}"},
        {"role": "user", "content": "{{question}}"},
    ],
    company="Acme",
    question=None,
)
BRACES = content('Answer as {"name": "{{name}}"} and keep \\{{this}} literal.', name=None)
REV = revkit.revision(
    4,
    {"greeting": GREETING, "welcome": WELCOME, "team": TEAM, "chat": CHAT, "braces": BRACES},
    KEYS.active,
    versions={"greeting": 7},
)
APPLIED = revkit.applied(REV, KEYS.public_keys())


def prompt(name: str) -> Prompt:
    return APPLIED.prompts[name]


def text(rendered: str | list[dict[str, str]]) -> str:
    assert isinstance(rendered, str)
    return rendered


def thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


# -- a served prompt ------------------------------------------------------------------------------


def test_prompt_carries_where_it_came_from() -> None:
    greeting = prompt("greeting")
    assert greeting.name == "greeting"
    assert greeting.version == 7
    assert greeting.content_hash == REV.digest_of_prompt("greeting")
    assert greeting.revision == 4
    assert greeting.fetched_at == datetime(2026, 11, 25, tzinfo=UTC)
    assert greeting.source == "gateway"
    assert thaw(greeting.content) == GREETING
    assert greeting.template == "Hello {{name}}! {{> shared:footer}}"
    assert thaw(greeting.variables) == {"name": {"default": None, "description": ""}}
    assert greeting.model is None
    assert greeting.metadata == {}


def test_prompt_is_frozen() -> None:
    greeting = prompt("greeting")
    with pytest.raises(dataclasses.FrozenInstanceError):
        greeting.revision = 99  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        greeting.content = {}  # type: ignore[misc]
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        greeting.extra = 1  # type: ignore[attr-defined]
    assert greeting.revision == 4


def test_prompt_content_is_read_only_all_the_way_down() -> None:
    greeting, chat = prompt("greeting"), prompt("chat")
    with pytest.raises(TypeError):
        greeting.content["template"] = "Pwned"  # type: ignore[index]
    with pytest.raises(TypeError):
        greeting.content["variables"]["name"] = {"default": "x"}
    with pytest.raises(TypeError):
        greeting.variables["name"]["default"] = "x"
    with pytest.raises(TypeError):
        chat.template[0]["content"] = "Pwned"  # type: ignore[index]
    with pytest.raises(AttributeError):
        chat.template.append({"role": "user", "content": "Pwned"})  # type: ignore[union-attr]
    assert greeting.render(name="Ada") == "Hello Ada! Bye from Acme support"


def test_prompt_content_does_not_share_the_revision_document() -> None:
    rev = revkit.revision(1, {"greeting": content("Hi {{name}}", name=None)}, KEYS.active)
    served = revkit.applied(rev, KEYS.public_keys()).prompts["greeting"]
    rev.contents[rev.digest_of_prompt("greeting")]["template"] = "Pwned"
    assert served.template == "Hi {{name}}"
    assert served.render(name="Ada") == "Hi Ada"


def test_render_expands_partials_across_projects() -> None:
    assert prompt("greeting").render(name="Ada") == "Hello Ada! Bye from Acme support"


def test_render_uses_defaults_of_the_prompt_and_its_partials() -> None:
    welcome = prompt("welcome")
    assert welcome.render(name="Ada") == "Hello Ada, from Team Acme"
    assert welcome.render(name="Ada", salutation="Hi", team="Zed") == "Hi Ada, from Team Zed"


def test_render_converts_values_with_str() -> None:
    assert prompt("welcome").render(name=42, team=None) == "Hello 42, from Team None"


def test_render_missing_variable_is_a_clear_error() -> None:
    with pytest.raises(RenderError, match=r"^missing variable\(s\): name$"):
        prompt("greeting").render()
    with pytest.raises(RenderError, match=r"^missing variable\(s\): question$"):
        prompt("chat").render(company="Zed")


def test_render_unknown_variable_is_an_error() -> None:
    with pytest.raises(RenderError, match=r"^unknown variable\(s\): nmae$"):
        prompt("greeting").render(name="Ada", nmae="Ada")
    # A variable only a partial declares is known to its holder.
    assert text(prompt("welcome").render(name="Ada", team="Zed")).endswith("Team Zed")


def test_render_chat_template_gives_role_content_messages() -> None:
    chat = prompt("chat")
    rendered = chat.render(question="Where is my order?")
    assert rendered == [
        {"role": "system", "content": "You help Acme customers. Team Acme"},
        {"role": "user", "content": "Where is my order?"},
    ]
    assert isinstance(rendered, list)
    rendered[0]["content"] = "changed by the app"
    again = chat.render(question="Again?")
    assert isinstance(again, list)
    assert again[0]["content"] == "You help Acme customers. Team Acme"


def test_render_keeps_braces_literal_and_values_verbatim() -> None:
    braces = prompt("braces")
    assert braces.render(name="Ada") == 'Answer as {"name": "Ada"} and keep {{this}} literal.'
    # A value is never formatted again: no attribute or index lookups through it.
    assert text(braces.render(name="{0.__class__}{name!r}")).startswith(
        'Answer as {"name": "{0.__class__}{name!r}"}'
    )


def test_render_is_the_reference_renderers_result() -> None:
    verified = APPLIED.verified
    for name, values in [
        ("greeting", {"name": "Ada"}),
        ("welcome", {"name": "Ada"}),
        ("chat", {"question": "?"}),
    ]:
        assert prompt(name).render(**values) == verified.render(name, values)


# -- fallbacks ------------------------------------------------------------------------------------


def test_fallback_from_text_declares_its_variables_without_defaults() -> None:
    fallback = fallback_prompt("greeting", "Hi {{name}}, about {{topic}}")
    assert fallback.name == "greeting"
    assert fallback.source == "fallback"
    assert (fallback.version, fallback.content_hash, fallback.revision, fallback.fetched_at) == (
        None,
        None,
        None,
        None,
    )
    assert sorted(fallback.variables) == ["name", "topic"]
    assert fallback.render(name="Ada", topic="billing") == "Hi Ada, about billing"
    with pytest.raises(RenderError, match=r"missing variable\(s\): topic"):
        fallback.render(name="Ada")
    with pytest.raises(RenderError, match=r"unknown variable\(s\): other"):
        fallback.render(name="Ada", topic="x", other="y")


def test_fallback_from_content_is_normalised_and_uses_defaults() -> None:
    fallback = fallback_prompt(
        "chat",
        {
            "template": [{"role": "user", "content": "{{greeting}}, {{name}}"}],
            "variables": {"greeting": {"default": "Hello"}, "name": None},
        },
    )
    assert thaw(fallback.variables) == {
        "greeting": {"default": "Hello", "description": ""},
        "name": {"default": None, "description": ""},
    }
    assert fallback.render(name="Ada") == [{"role": "user", "content": "Hello, Ada"}]
    with pytest.raises(TypeError):
        fallback.content["template"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "bad",
    [
        "Hi {{name",
        "Hi {{ not a variable }}",
        "Hi {{> footer}}",
        {"template": "Hi {{name}}", "variables": {}},
        {"template": "Hi", "script": "rm -rf /"},
        {"template": [{"role": "hacker", "content": "Hi"}]},
        {"variables": {}},
    ],
    ids=["unclosed", "bad-tag", "partial", "undeclared", "unknown-member", "bad-role", "no-template"],
)
def test_bad_fallback_is_a_render_error_naming_the_prompt(bad: Any) -> None:
    with pytest.raises(RenderError, match="fallback for 'greeting'"):
        fallback_prompt("greeting", bad)


async def test_client_without_a_revision_serves_the_fallback_or_says_why_not() -> None:
    client = AsyncAnvilClient(
        "https://gateway.example",
        token="t",
        organisation="acme",
        project="web",
        environment="prod",
        public_keys=KEYS.public_jwks(),
    )
    fallback = client.get_prompt("greeting", fallback="Hi {{name}}")
    assert fallback.render(name="Ada") == "Hi Ada"
    assert client.get_prompt("greeting", fallback="Hi {{name}}") is fallback
    assert client.get_prompt("greeting", fallback={"template": "Hey"}).render() == "Hey"
    with pytest.raises(RenderError):
        client.get_prompt("greeting", fallback="Hi {{")
    with pytest.raises(NotReadyError, match=r"gateway https://gateway\.example: not connected yet"):
        client.get_prompt("greeting")
    await client.close()
