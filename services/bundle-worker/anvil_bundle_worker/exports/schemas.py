from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from anvil_wire import is_prompt_name, is_slug
from anvil_wire.bundles.spec import check_selection

__all__ = ["SelectionIn", "ExportCreate", "MAX_SELECTED_PROMPTS"]

MAX_SELECTED_PROMPTS = 10_000


def _slug(value: str | None, what: str) -> None:
    if value is not None and not is_slug(value):
        raise ValueError(f"{what} {value!r} is not a valid slug")


class SelectionIn(BaseModel):
    """What to export (docs/bundle-format.md 4.1): members a kind does not use are null."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["organisation", "project", "prompt_set", "prompts"]
    project: str | None = None
    prompt_set: str | None = None
    prompts: list[str] | None = Field(
        default=None,
        max_length=MAX_SELECTED_PROMPTS,
        description="For kind prompts: `project/name` strings, across projects of the organisation.",
    )

    @model_validator(mode="after")
    def _members_of_kind(self) -> Self:
        check_selection(self.kind, self.project, self.prompt_set, self.prompts)
        _slug(self.project, "project")
        if self.prompt_set is not None and not is_prompt_name(self.prompt_set):
            raise ValueError(f"prompt set name {self.prompt_set!r} is not valid")
        return self

    @field_validator("prompts")
    @classmethod
    def _prompt_refs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("select at least one prompt")
        for ref in value:
            project, sep, name = ref.partition("/")
            if not sep or not is_slug(project) or not is_prompt_name(name):
                raise ValueError(f"{ref!r} is not `project/name`")
        if len(set(value)) != len(value):
            raise ValueError("a prompt is selected twice")
        # The manifest lists them ascending (bundle-format 4.1): one selection, one spelling.
        return sorted(value)

    def projects(self) -> set[str]:
        """The projects this selection names ({} for a whole organisation)."""
        if self.prompts is not None:
            return {ref.partition("/")[0] for ref in self.prompts}
        return {self.project} if self.project is not None else set()


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation: str = Field(description="The organisation's slug.")
    selection: SelectionIn
    history: Literal["latest", "full"] = Field(
        default="latest", description="latest: each prompt's latest version (and what references need)."
    )
    environments: bool = Field(default=False, description="Include environments and their revisions.")

    @field_validator("organisation")
    @classmethod
    def _organisation(cls, value: str) -> str:
        _slug(value, "organisation")
        return value
