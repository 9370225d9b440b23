"""Request and response bodies of the bundle endpoints (docs/api.md section 7).

The snapshot answers with the manifest members of docs/bundle-format.md section 4, so its shape
is built by the service as plain JSON (the format document is the schema); requests are strict
pydantic models like every other registry body.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anvil_wire.bundles.spec import check_selection
from anvil_wire.prompts import SLUG_PATTERN, is_prompt_name, is_slug

from ..prompt_sets.schemas import MAX_SET_PROMPTS, SetName
from ..prompts.schemas import PromptName, has_reserved_segment

__all__ = [
    "MAX_ITEMS",
    "Digest",
    "Selection",
    "SnapshotCreate",
    "ImportStateRequest",
    "ImportCreate",
    "ImportPublic",
    "split_prompt_key",
]

MAX_ITEMS = 100_000  # above any bundle (100,001 archive entries, two of them not objects)
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"

Slug = Annotated[str, Field(pattern=f"^{SLUG_PATTERN}$")]
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN)]
Message = Annotated[str, Field(max_length=10_000)]
Description = Annotated[str, Field(max_length=10_000)]


def split_prompt_key(key: str) -> tuple[str, str]:
    """``project/name`` -> (project, name); the name may itself contain '/'."""
    project, _, name = key.partition("/")
    return project, name


def _valid_prompt_key(key: str) -> bool:
    project, name = split_prompt_key(key)
    return is_slug(project) and is_prompt_name(name) and not has_reserved_segment(name)


class Selection(BaseModel):
    """What to export: docs/bundle-format.md section 4.1 (members a kind does not use are null)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["organisation", "project", "prompt_set", "prompts"]
    project: Slug | None = None
    prompt_set: SetName | None = None
    prompts: list[str] | None = Field(
        default=None,
        max_length=MAX_ITEMS,
        description="`project/name` strings (kind `prompts`); answered sorted and without duplicates.",
    )

    @model_validator(mode="after")
    def _members_fit_the_kind(self) -> Selection:
        check_selection(self.kind, self.project, self.prompt_set, self.prompts)
        if self.prompts is not None:
            if not self.prompts:
                raise ValueError("a 'prompts' selection names at least one prompt")
            bad = [key for key in self.prompts if not _valid_prompt_key(key)]
            if bad:
                raise ValueError(f"not a 'project/name' prompt key: {bad[0]!r}")
            self.prompts = sorted(set(self.prompts))
        return self


class SnapshotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selection: Selection
    history: Literal["latest", "full"] = "latest"
    environments: bool = False


class ProjectNames(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompts: list[PromptName] = Field(default_factory=list, max_length=MAX_ITEMS)
    prompt_sets: list[SetName] = Field(default_factory=list, max_length=MAX_ITEMS)
    environments: list[Slug] = Field(default_factory=list, max_length=MAX_ITEMS)


class ImportStateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    projects: dict[Slug, ProjectNames] = Field(max_length=10_000)


class Origin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance: str = Field(min_length=1, max_length=500, description="The exporting registry's public URL.")
    bundle: Digest = Field(description="The bundle digest (docs/bundle-format.md section 2).")


class ProjectExpect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exists: bool
    prompts: dict[PromptName, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="Head version number the plan saw; 0: absent."
    )
    prompt_sets: dict[SetName, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="row_version the plan saw; 0: absent."
    )
    environments: dict[Slug, Annotated[int, Field(ge=-1)]] = Field(
        default_factory=dict, description="last_revision the plan saw; -1: absent."
    )


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    projects: dict[Slug, ProjectExpect] = Field(default_factory=dict)


class ProjectImport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: str = Field(min_length=1, max_length=200)
    description: Description = ""


class VersionImport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digest: Digest
    message: Message = ""


class PromptImport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: Slug
    name: PromptName
    description: Description = ""
    versions: list[VersionImport] = Field(default_factory=list, max_length=MAX_ITEMS)
    archived: bool = Field(
        default=False, description="Archive the prompt once the import is applied (a restored backup)."
    )


class PromptSetImport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: Slug
    name: SetName
    description: Description = ""
    prompts: list[SetName] = Field(default_factory=list, max_length=MAX_SET_PROMPTS)


class RevisionImport(BaseModel):
    """One revision to write, after the environment's current one (or the previous in the list)."""

    model_config = ConfigDict(extra="forbid")
    prompts: dict[PromptName, Digest] = Field(description="Served prompt name -> content digest.")
    versions: dict[PromptName, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="Optional: the target's version number serving a prompt of `prompts` (it must have "
        "that digest); a prompt not named here is served by its newest version with the digest.",
    )
    kind: Literal["publish", "promote", "rollback"] = Field(
        default="publish", description="What the exporter's history recorded (`promote` keeps no source)."
    )
    rollback_of: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="With kind `rollback` (and only then): the target's number of the earlier revision of "
        "this environment whose entries this one restores; its prompts must equal `prompts`.",
    )
    message: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> RevisionImport:
        if (self.kind == "rollback") != (self.rollback_of is not None):
            raise ValueError("rollback_of is given exactly when kind is 'rollback'")
        extra = sorted(set(self.versions) - set(self.prompts))
        if extra:
            raise ValueError(f"versions names {extra[0]!r}, which prompts does not serve")
        return self


class EnvironmentImport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: Slug
    name: Slug
    description: Description = ""
    revisions: list[RevisionImport] = Field(default_factory=list, max_length=MAX_ITEMS)


class ImportCreate(BaseModel):
    """What to apply (docs/api.md section 7.3): the body the bundle worker's plan produces."""

    model_config = ConfigDict(extra="forbid")
    import_id: uuid.UUID = Field(description="The plan's id; applying it again replays the first result.")
    origin: Origin
    expect: Expect = Field(default_factory=Expect)
    projects: list[ProjectImport] = Field(default_factory=list, max_length=10_000)
    prompts: list[PromptImport] = Field(default_factory=list, max_length=MAX_ITEMS)
    prompt_sets: list[PromptSetImport] = Field(default_factory=list, max_length=MAX_ITEMS)
    environments: list[EnvironmentImport] = Field(default_factory=list, max_length=10_000)
    contents: dict[Digest, dict[str, Any]] = Field(
        default_factory=dict, max_length=MAX_ITEMS, description="Digest -> prompt content (normal form)."
    )


class CreatedCounts(BaseModel):
    projects: int
    prompts: int
    versions: int
    prompt_sets: int = Field(description="Prompt sets created or replaced.")
    environments: int
    revisions: int


class VersionCreated(BaseModel):
    project: str
    name: str
    number: int
    digest: str


class RevisionCreated(BaseModel):
    project: str
    environment: str
    number: int


class ImportPublic(BaseModel):
    import_id: uuid.UUID
    created: CreatedCounts
    versions: list[VersionCreated]
    revisions: list[RevisionCreated]
