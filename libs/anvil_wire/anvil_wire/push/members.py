"""The nested members of push messages (docs/push-protocol.md section 2), as frozen dataclasses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import _checks as c

__all__ = ["Sdk", "Subscription", "Holds", "Current", "PromptSetScope"]


@dataclass(frozen=True)
class Sdk:
    """``hello.sdk``: the client library and its version."""

    name: str
    version: str

    def __post_init__(self) -> None:
        c.text(self.name, "sdk.name", minimum=1, maximum=c.MAX_SDK_TEXT)
        c.text(self.version, "sdk.version", minimum=1, maximum=c.MAX_SDK_TEXT)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    @classmethod
    def from_json(cls, doc: Any) -> Sdk:
        get = partial(c.member, c.json_object(doc, "sdk"), "sdk.")
        return cls(name=get("name"), version=get("version"))


@dataclass(frozen=True)
class Subscription:
    """``hello.subscription``: the environment (and prompt set) the client wants."""

    organisation: str
    project: str
    environment: str
    prompt_set: str | None = None

    def __post_init__(self) -> None:
        c.slug(self.organisation, "subscription.organisation")
        c.slug(self.project, "subscription.project")
        c.slug(self.environment, "subscription.environment")
        if self.prompt_set is not None:
            c.prompt_name(self.prompt_set, "subscription.prompt_set")

    def to_json(self) -> dict[str, Any]:
        return {
            "organisation": self.organisation,
            "project": self.project,
            "environment": self.environment,
            "prompt_set": self.prompt_set,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Subscription:
        get = partial(c.member, c.json_object(doc, "subscription"), "subscription.")
        return cls(get("organisation"), get("project"), get("environment"), get("prompt_set"))


@dataclass(frozen=True)
class Holds:
    """``hello.holds``: the revision the client has applied for the environment."""

    environment_id: str
    revision: int
    manifest_digest: str

    def __post_init__(self) -> None:
        c.uuid(self.environment_id, "holds.environment_id")
        c.set_member(self, "revision", c.revision(self.revision, "holds.revision"))
        c.digest(self.manifest_digest, "holds.manifest_digest")

    def to_json(self) -> dict[str, Any]:
        return {
            "environment_id": self.environment_id,
            "revision": self.revision,
            "manifest_digest": self.manifest_digest,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Holds:
        get = partial(c.member, c.json_object(doc, "holds"), "holds.")
        return cls(get("environment_id"), get("revision"), get("manifest_digest"))


@dataclass(frozen=True)
class Current:
    """``welcome.current``: the environment's current revision."""

    revision: int
    manifest_digest: str

    def __post_init__(self) -> None:
        c.set_member(self, "revision", c.revision(self.revision, "current.revision"))
        c.digest(self.manifest_digest, "current.manifest_digest")

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "manifest_digest": self.manifest_digest}

    @classmethod
    def from_json(cls, doc: Any) -> Current:
        get = partial(c.member, c.json_object(doc, "current"), "current.")
        return cls(get("revision"), get("manifest_digest"))


@dataclass(frozen=True)
class PromptSetScope:
    """``prompt_set`` of a snapshot or delta: the set, and the manifest's prompts the client serves."""

    name: str
    prompts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        c.prompt_name(self.name, "prompt_set.name")
        c.set_member(self, "prompts", c.prompt_names(self.prompts, "prompt_set.prompts"))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "prompts": list(self.prompts)}

    @classmethod
    def from_json(cls, doc: Any) -> PromptSetScope:
        get = partial(c.member, c.json_object(doc, "prompt_set"), "prompt_set.")
        return cls(get("name"), get("prompts"))

    @classmethod
    def serving(cls, name: str, members: Iterable[str], served: Iterable[str]) -> PromptSetScope:
        """The scope of set ``name``: those of its ``members`` that a revision serves (``served``)."""
        return cls(name, tuple(sorted(set(members) & set(served))))
