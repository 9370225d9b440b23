"""``Prompt``: one prompt of the revision a client serves, frozen, with a compiled renderer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from anvil_wire import CompiledTemplate, PromptFormatError, RenderError, compile_template, normalize_content
from anvil_wire.prompts import template_variables

__all__ = ["Prompt", "Source", "fallback_prompt", "freeze"]

Source = Literal["gateway", "cache", "bootstrap", "fallback"]


def freeze(value: Any) -> Any:
    """A read-only copy of JSON: objects become mapping proxies, arrays tuples (strings shared)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt as the client serves it: content and where it came from. Immutable.

    Attributes:
        name: The prompt's name in its project (``support/greeting``).
        content: The prompt version's content in normal form (``template``, ``variables``,
            ``model``, ``metadata``; docs/prompt-format.md), read-only.
        version: The prompt version number, or None for a ``fallback=``.
        content_hash: ``sha256:`` digest of ``content`` (checked against the signed manifest),
            or None for a fallback.
        revision: The config revision this prompt belongs to, or None for a fallback.
        fetched_at: When the client received that revision (UTC), or None for a fallback.
        source: ``"gateway"`` (received live), ``"cache"`` (the persisted last-known-good),
            ``"bootstrap"`` (the app's bootstrap file) or ``"fallback"``.
    """

    name: str
    content: Mapping[str, Any]
    version: int | None
    content_hash: str | None
    revision: int | None
    fetched_at: datetime | None
    source: Source
    _template: CompiledTemplate = field(repr=False, compare=False)

    @property
    def template(self) -> str | tuple[Mapping[str, str], ...]:
        """The template: text, or chat messages (``role``, ``content``)."""
        template: str | tuple[Mapping[str, str], ...] = self.content["template"]
        return template

    @property
    def variables(self) -> Mapping[str, Any]:
        """The declared variables (name → declaration, e.g. ``{"default": ...}``)."""
        variables: Mapping[str, Any] = self.content["variables"]
        return variables

    @property
    def model(self) -> Mapping[str, Any] | None:
        """The model configuration (provider, model, parameters), or None."""
        model: Mapping[str, Any] | None = self.content.get("model")
        return model

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The version's metadata."""
        metadata: Mapping[str, Any] = self.content.get("metadata") or {}
        return metadata

    def render(self, **variables: Any) -> str | list[dict[str, str]]:
        """Render the template with ``variables``, partials expanded.

        Args:
            **variables: A value for each variable the template (or a partial) uses; a declared
                default stands in for a variable not given. Values are converted with ``str()``.

        Returns:
            The text, or for a chat prompt a list of ``{"role", "content"}`` messages.

        Raises:
            RenderError: A variable without value or default is missing, or a variable was
                given that no template involved declares.
        """
        return self._template.render(variables)


def fallback_prompt(name: str, fallback: str | Mapping[str, Any]) -> Prompt:
    """A ``Prompt`` from a per-call ``fallback=``: template text, or content in prompt format.

    Raises:
        RenderError: The fallback is not a valid template (partials are not allowed in one).
    """
    if isinstance(fallback, str):
        content: dict[str, Any] = {
            "template": fallback,
            "variables": {},
            "model": None,
            "metadata": {},
        }
        try:
            content["variables"] = {v: {} for v in template_variables(content)}
        except PromptFormatError as exc:
            raise RenderError(f"fallback for {name!r}: {exc}") from None
    try:
        if not isinstance(fallback, str):
            content = normalize_content(fallback)
        compiled = compile_template(content)
    except (PromptFormatError, RenderError) as exc:
        raise RenderError(f"fallback for {name!r} is not a prompt: {exc}") from None
    return Prompt(name, freeze(content), None, None, None, None, "fallback", compiled)
