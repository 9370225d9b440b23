"""The prompt format (docs/prompt-format.md): names, templates, partials, content hashing, rendering.

Shared by the registry (which validates and hashes) and the runtime SDK (which renders), so
that the two can never disagree about what a template means. ``render`` is the reference;
``compile_template`` gives the same results for the SDK's hot path, where a template is
rendered many times: partials are expanded once into a ``str.format`` string per text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical_json, digest_of

__all__ = [
    "PromptFormatError",
    "RenderError",
    "PartialRef",
    "Variable",
    "Text",
    "Token",
    "NAME_PATTERN",
    "SLUG_PATTERN",
    "CHAT_ROLES",
    "MAX_PARTIAL_DEPTH",
    "MAX_RENDERED_CHARS",
    "MAX_JSON_DEPTH",
    "is_prompt_name",
    "is_slug",
    "parse_template",
    "parse_reference",
    "normalize_content",
    "content_digest",
    "template_variables",
    "template_references",
    "render",
    "CompiledTemplate",
    "compile_template",
]

SLUG_PATTERN = r"[a-z][a-z0-9-]{0,62}"
_SEGMENT = r"[a-z0-9][a-z0-9._-]{0,62}"
NAME_PATTERN = rf"{_SEGMENT}(?:/{_SEGMENT}){{0,7}}"
_VAR = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
# Matched with fullmatch: ``$`` would also match before a trailing newline ("acme\n").
_NAME_RE = re.compile(NAME_PATTERN)
_SLUG_RE = re.compile(SLUG_PATTERN)
_VAR_RE = re.compile(_VAR)
_REF_RE = re.compile(
    rf"(?:(?P<project>{SLUG_PATTERN}):)?(?P<name>{NAME_PATTERN})"
    rf"(?:@(?:(?P<version>[1-9][0-9]{{0,8}})|(?P<environment>{SLUG_PATTERN})))?"
)
# Each "{{" with the run of backslashes before it: pairs are literal backslashes, an odd one
# left over makes the "{{" literal text. Backslashes anywhere else are ordinary text.
_OPEN_RE = re.compile(r"(\\*)\{\{")
CHAT_ROLES = ("system", "developer", "user", "assistant")
MAX_PARTIAL_DEPTH = 16
MAX_RENDERED_CHARS = 4 * 1024 * 1024
MAX_NAME_LENGTH = 200
_CONTENT_KEYS = frozenset({"template", "variables", "model", "metadata"})


class PromptFormatError(ValueError):
    """Content that does not follow docs/prompt-format.md."""


class RenderError(ValueError):
    """Rendering failed: a missing or unknown variable, a missing partial, a cycle."""


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class PartialRef:
    """``[project:]name[@version|@environment]``; unpinned means "through the environment"."""

    name: str
    project: str | None = None
    version: int | None = None
    environment: str | None = None

    @property
    def text(self) -> str:
        head = f"{self.project}:{self.name}" if self.project else self.name
        if self.version is not None:
            return f"{head}@{self.version}"
        if self.environment is not None:
            return f"{head}@{self.environment}"
        return head


Token = Text | Variable | PartialRef


def is_prompt_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_NAME_LENGTH and bool(_NAME_RE.fullmatch(value))


def is_slug(value: object) -> bool:
    return isinstance(value, str) and bool(_SLUG_RE.fullmatch(value))


def parse_reference(text: str) -> PartialRef:
    """Parse a partial reference such as ``shared:footer@3`` or ``footer@prod``."""
    match = _REF_RE.fullmatch(text)
    if not match:
        raise PromptFormatError(
            f"invalid partial reference {text!r}: expected [project:]name[@version|@environment]"
        )
    version = match.group("version")
    return PartialRef(
        name=match.group("name"),
        project=match.group("project"),
        version=int(version) if version else None,
        environment=match.group("environment"),
    )


def parse_template(template: str) -> list[Token]:
    """Split a template string into text, ``{{variable}}`` and ``{{> partial}}`` tokens."""
    tokens: list[Token] = []
    text: list[str] = []
    pos = 0
    while (match := _OPEN_RE.search(template, pos)) is not None:
        backslashes = len(match.group(1))
        text.append(template[pos : match.start()] + "\\" * (backslashes // 2))
        if backslashes % 2:
            text.append("{{")
            pos = match.end()
            continue
        close = template.find("}}", match.end())
        line = template.count("\n", 0, match.end()) + 1
        if close < 0:
            raise PromptFormatError(f"line {line}: unclosed '{{{{' (write '\\{{{{' for a literal)")
        inner = template[match.end() : close].strip()
        if "".join(text):
            tokens.append(Text("".join(text)))
        text = []
        if inner.startswith(">"):
            tokens.append(parse_reference(inner[1:].strip()))
        elif _VAR_RE.fullmatch(inner):
            tokens.append(Variable(inner))
        else:
            raise PromptFormatError(
                f"line {line}: {template[match.end() - 2 : close + 2]!r} is neither {{{{variable}}}} "
                "nor {{> partial}}"
            )
        pos = close + 2
    text.append(template[pos:])
    if "".join(text):
        tokens.append(Text("".join(text)))
    return tokens


def _template_strings(template: str | list[dict[str, str]]) -> list[str]:
    return [template] if isinstance(template, str) else [m["content"] for m in template]


def template_variables(content: Mapping[str, Any]) -> list[str]:
    """Variable names used by a normalized content's template, in first-use order."""
    seen: dict[str, None] = {}
    for text in _template_strings(content["template"]):
        for token in parse_template(text):
            if isinstance(token, Variable):
                seen.setdefault(token.name)
    return list(seen)


def template_references(content: Mapping[str, Any]) -> list[PartialRef]:
    """Partial references of a normalized content, in first-use order, without duplicates."""
    seen: dict[str, PartialRef] = {}
    for text in _template_strings(content["template"]):
        for token in parse_template(text):
            if isinstance(token, PartialRef):
                seen.setdefault(token.text, token)
    return list(seen.values())


def _normalize_template(template: Any) -> str | list[dict[str, str]]:
    if isinstance(template, str):
        return template
    if not isinstance(template, list) or not template:
        raise PromptFormatError("template must be a string or a non-empty list of chat messages")
    messages = []
    for index, message in enumerate(template):
        if not isinstance(message, Mapping) or set(message) != {"role", "content"}:
            raise PromptFormatError(f"template[{index}] must be an object with exactly 'role' and 'content'")
        if message["role"] not in CHAT_ROLES:
            raise PromptFormatError(f"template[{index}].role must be one of {', '.join(CHAT_ROLES)}")
        if not isinstance(message["content"], str):
            raise PromptFormatError(f"template[{index}].content must be a string")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def _normalize_variables(variables: Any) -> dict[str, dict[str, Any]]:
    if variables is None:
        return {}
    if not isinstance(variables, Mapping):
        raise PromptFormatError("variables must be an object mapping names to declarations")
    result: dict[str, dict[str, Any]] = {}
    for name, spec in variables.items():
        if not isinstance(name, str) or not _VAR_RE.fullmatch(name):
            raise PromptFormatError(f"invalid variable name {name!r}")
        spec = {} if spec is None else spec
        if not isinstance(spec, Mapping) or not set(spec) <= {"description", "default"}:
            raise PromptFormatError(f"variable {name!r}: only 'description' and 'default' are allowed")
        description, default = spec.get("description", ""), spec.get("default")
        if not isinstance(description, str) or not (default is None or isinstance(default, str)):
            raise PromptFormatError(f"variable {name!r}: description and default must be strings")
        result[name] = {"default": default, "description": description}
    return result


def _normalize_model(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    if not isinstance(model, Mapping) or not set(model) <= {"provider", "name", "parameters"}:
        raise PromptFormatError("model must be an object with 'provider', 'name' and optional 'parameters'")
    provider, name, parameters = model.get("provider"), model.get("name"), model.get("parameters", {})
    if not isinstance(provider, str) or not provider or not isinstance(name, str) or not name:
        raise PromptFormatError("model.provider and model.name must be non-empty strings")
    if not isinstance(parameters, Mapping):
        raise PromptFormatError("model.parameters must be an object")
    return {"provider": provider, "name": name, "parameters": dict(parameters)}


MAX_JSON_DEPTH = 32


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping as soon as it passes ``limit``."""
    if limit < 0:
        return 0
    if isinstance(value, Mapping):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def normalize_content(content: Mapping[str, Any]) -> dict[str, Any]:
    """Validate prompt content and return its normal form, the form that is hashed.

    Raises PromptFormatError on unknown members, bad types, template syntax errors, or a
    template variable that is not declared.
    """
    if not isinstance(content, Mapping):
        raise PromptFormatError("content must be an object")
    unknown = set(content) - _CONTENT_KEYS
    if unknown:
        raise PromptFormatError(f"unknown content member(s): {', '.join(sorted(unknown))}")
    if _depth(content, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise PromptFormatError(f"content is nested deeper than {MAX_JSON_DEPTH} levels")
    if "template" not in content:
        raise PromptFormatError("content needs a 'template'")
    metadata = content.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise PromptFormatError("metadata must be an object")
    normal = {
        "template": _normalize_template(content["template"]),
        "variables": _normalize_variables(content.get("variables")),
        "model": _normalize_model(content.get("model")),
        "metadata": dict(metadata),
    }
    try:
        canonical_json(normal)
    except (TypeError, ValueError) as exc:
        raise PromptFormatError(f"content is not representable as canonical JSON: {exc}") from exc
    declared = normal["variables"]
    assert isinstance(declared, dict)
    undeclared = [v for v in template_variables(normal) if v not in declared]
    if undeclared:
        raise PromptFormatError(f"template uses undeclared variable(s): {', '.join(undeclared)}")
    return normal


def content_digest(content: Mapping[str, Any]) -> str:
    """``sha256:`` digest of the normalized content (template, variables, model, metadata)."""
    return digest_of(normalize_content(content))


PartialResolver = Callable[[Mapping[str, Any], PartialRef], Mapping[str, Any]]


def _declared_default(node: Mapping[str, Any], name: str) -> Any:
    """The default ``node`` declares for variable ``name``, None if it has none."""
    return node["variables"].get(name, {}).get("default")


def _too_long() -> RenderError:
    # Built when raised, not once: tests lower MAX_RENDERED_CHARS to reach the limit cheaply.
    return RenderError(f"rendered text exceeds {MAX_RENDERED_CHARS} characters")


def _resolve(
    resolve_partial: PartialResolver | None,
    node: Mapping[str, Any],
    ref: PartialRef,
    path: tuple[str, ...],
    nodes: tuple[int, ...],
) -> Mapping[str, Any]:
    """The text content ``ref`` in ``node`` points to, after the resolver, depth and cycle checks."""
    if resolve_partial is None:
        raise RenderError(f"partial {ref.text!r} cannot be resolved here")
    chain = " > ".join((*path, ref.text))
    if len(path) >= MAX_PARTIAL_DEPTH:
        raise RenderError(f"partials nested deeper than {MAX_PARTIAL_DEPTH} (depth limit) at {chain}")
    target = resolve_partial(node, ref)
    if id(target) in nodes:
        raise RenderError(f"partial cycle at {chain}")
    if not isinstance(target["template"], str):
        raise RenderError(f"partial {ref.text!r} is a chat prompt; partials must be text")
    return target


def render(
    content: Mapping[str, Any],
    variables: Mapping[str, Any],
    resolve_partial: PartialResolver | None = None,
) -> str | list[dict[str, str]]:
    """Render normalized content with ``variables``; partials come from ``resolve_partial``.

    ``resolve_partial(parent_content, ref)`` returns the content a reference points to (or
    raises RenderError); it must return the same object for the same target, which is how a
    cycle is recognised (the same reference text may name different prompts in different
    projects, so texts cannot be compared). Raises RenderError for missing or unknown
    variables, partial cycles and partials nested deeper than MAX_PARTIAL_DEPTH.
    """
    declared: set[str] = set()
    missing: list[str] = []

    def expand(node: Mapping[str, Any], text: str, path: tuple[str, ...], nodes: tuple[int, ...]) -> str:
        declared.update(node["variables"])
        out: list[str] = []
        for token in parse_template(text):
            if isinstance(token, Text):
                out.append(token.text)
            elif isinstance(token, Variable):
                if token.name in variables:
                    out.append(str(variables[token.name]))
                elif (default := _declared_default(node, token.name)) is not None:
                    out.append(str(default))
                else:
                    missing.append(token.name)
            else:
                target = _resolve(resolve_partial, node, token, path, nodes)
                out.append(expand(target, target["template"], (*path, token.text), (*nodes, id(target))))
        result = "".join(out)
        # Partials may include each other many times: bound the work, not just the depth.
        if len(result) > MAX_RENDERED_CHARS:
            raise _too_long()
        return result

    template = content["template"]
    root = (id(content),)
    if isinstance(template, str):
        result: str | list[dict[str, str]] = expand(content, template, (), root)
    else:
        result = [{"role": m["role"], "content": expand(content, m["content"], (), root)} for m in template]
    if missing:
        raise RenderError(f"missing variable(s): {', '.join(dict.fromkeys(missing))}")
    unknown = sorted(set(variables) - declared)
    if unknown:
        raise RenderError(f"unknown variable(s): {', '.join(unknown)}")
    return result


@dataclass(frozen=True, slots=True, eq=False)
class CompiledTemplate:
    """A template with its partials expanded into ``str.format`` strings (see compile_template)."""

    # Every variable declared by the template's content and by each partial it reaches.
    declared: frozenset[str]
    # (role, format string) per chat message; a single ("", format string) for a text template.
    _formats: tuple[tuple[str, str], ...] = field(repr=False)
    _chat: bool = field(repr=False)
    # Variables used by some tag without a default: as a set, and in first-use order.
    _required: frozenset[str] = field(repr=False)
    _required_order: tuple[str, ...] = field(repr=False)
    # Field -> value when its variable is not given; "" for a required one, so that a render with
    # missing variables measures the text as render() does before it reports them.
    _defaults: dict[str, str] = field(repr=False)
    # (field, variable, default) for tags whose default differs from the variable's first tag's.
    _aliases: tuple[tuple[str, str, str], ...] = field(repr=False)
    # No defaults and no aliases: a complete render formats straight from the caller's mapping.
    _plain: bool = field(repr=False)

    def render(self, variables: Mapping[str, Any]) -> str | list[dict[str, str]]:
        """What render() returns for the compiled content and ``variables``, or the same RenderError."""
        keys = variables.keys()
        complete = keys >= self._required
        values = variables if complete and self._plain else self._values(variables)
        result: str | list[dict[str, str]]
        if self._chat:
            result = [{"role": role, "content": fmt.format_map(values)} for role, fmt in self._formats]
            size = max((len(message["content"]) for message in result), default=0)
        else:
            result = self._formats[0][1].format_map(values)
            size = len(result)
        # render()'s order: the size limit (checked while expanding), then missing, then unknown.
        # Only whole texts are measured: a partial's text is part of its holder's, so a whole text
        # within the limit has all its parts within it, and one beyond it is refused by render().
        if size > MAX_RENDERED_CHARS:
            raise _too_long()
        if not complete:
            missing = [name for name in self._required_order if name not in variables]
            raise RenderError(f"missing variable(s): {', '.join(missing)}")
        if not keys <= self.declared:
            raise RenderError(f"unknown variable(s): {', '.join(sorted(set(variables) - self.declared))}")
        return result

    def _values(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """Every field's value: the caller's value of its variable, else the field's default."""
        values = {**self._defaults, **variables}
        for alias, name, default in self._aliases:
            values[alias] = variables.get(name, default)
        return values


@dataclass(frozen=True, slots=True)
class _Fragment:
    """A text compiled with its partials expanded, and what reusing it elsewhere needs."""

    text: str  # the format string
    size: int  # characters, each tag counted as one
    depth: int  # levels of partials below the text
    reach: frozenset[int]  # ids of the text's holder and of every partial below it


class _Compiler:
    """Walks templates the way render() does, writing format strings instead of text."""

    def __init__(self, resolve_partial: PartialResolver | None) -> None:
        self.resolve_partial = resolve_partial
        self.declared: set[str] = set()
        self.required: dict[str, None] = {}  # an ordered set
        # (variable, default) -> field: the variable's name for its first default, an alias
        # "name-N" for any other (variable names have no "-", so aliases never clash).
        self.fields: dict[tuple[str, str | None], str] = {}
        # id(partial) -> (partial, fragment); the partial is kept so that its id stays its own.
        self.expanded: dict[int, tuple[Mapping[str, Any], _Fragment]] = {}

    def format_string(self, content: Mapping[str, Any], text: str) -> str:
        """The format string of one text or message of ``content``, partials expanded."""
        return self.expand(content, text, (), (id(content),)).text

    def expand(
        self, node: Mapping[str, Any], text: str, path: tuple[str, ...], nodes: tuple[int, ...]
    ) -> _Fragment:
        """Compile ``text``, held by ``node`` (the last of ``nodes``), with its partials expanded."""
        self.declared.update(node["variables"])
        out: list[str] = []
        size, depth, reach = 0, 0, {nodes[-1]}
        for token in parse_template(text):
            if isinstance(token, Text):
                out.append(token.text.replace("{", "{{").replace("}", "}}"))
                size += len(token.text)
            elif isinstance(token, Variable):
                # "!s" converts with str() as render() does; a bare field would call
                # format(value, ""), which differs for some types (mixed-in enums, __format__).
                out.append(f"{{{self.field(token.name, _declared_default(node, token.name))}!s}}")
                size += 1  # what render() measures for a one-character value
            else:
                part = self.partial(node, token, path, nodes)
                out.append(part.text)
                size, depth, reach = size + part.size, max(depth, part.depth + 1), reach | part.reach
        if size > MAX_RENDERED_CHARS:
            # Where render() stops for one-character values. Without values to go by, compiling
            # must stop somewhere: partials that multiply tags would otherwise expand without end.
            raise _too_long()
        return _Fragment("".join(out), size, depth, frozenset(reach))

    def partial(
        self, node: Mapping[str, Any], ref: PartialRef, path: tuple[str, ...], nodes: tuple[int, ...]
    ) -> _Fragment:
        """The fragment ``ref`` in ``node`` expands to; a partial met before is not walked again."""
        target = _resolve(self.resolve_partial, node, ref, path, nodes)
        inner = (*path, ref.text)
        known = self.expanded.get(id(target))
        # Reuse only where render() would pass the same checks: no partial below is on the
        # current path (a cycle), and the levels below still fit under MAX_PARTIAL_DEPTH.
        if known is not None and known[0] is target:
            fragment = known[1]
            if fragment.reach.isdisjoint(nodes) and len(inner) + fragment.depth <= MAX_PARTIAL_DEPTH:
                return fragment
        fragment = self.expand(target, target["template"], inner, (*nodes, id(target)))
        self.expanded[id(target)] = (target, fragment)
        return fragment

    def field(self, name: str, default: Any) -> str:
        """The format field of a ``{{name}}`` tag whose holder declares ``default`` for it."""
        if default is None:
            self.required.setdefault(name)
        key = (name, None if default is None else str(default))
        if key not in self.fields:
            count = sum(variable == name for variable, _ in self.fields)
            self.fields[key] = f"{name}-{count}" if count else name
        return self.fields[key]

    def build(self, formats: tuple[tuple[str, str], ...], chat: bool) -> CompiledTemplate:
        """The compiled template of the format strings written so far."""
        defaults: dict[str, str] = {}
        aliases: list[tuple[str, str, str]] = []
        for (name, default), field_name in self.fields.items():
            value = "" if default is None else default
            if field_name == name:
                defaults[name] = value
            else:
                aliases.append((field_name, name, value))
        return CompiledTemplate(
            declared=frozenset(self.declared),
            _formats=formats,
            _chat=chat,
            _required=frozenset(self.required),
            _required_order=tuple(self.required),
            _defaults=defaults,
            _aliases=tuple(aliases),
            _plain=not aliases and all(default is None for _, default in self.fields),
        )


def compile_template(
    content: Mapping[str, Any], resolve_partial: PartialResolver | None = None
) -> CompiledTemplate:
    """Pre-expand partials and pre-parse the template once; render() then only substitutes.

    ``compile_template(content, resolve_partial).render(variables)`` returns what
    ``render(content, variables, resolve_partial)`` returns, or raises the RenderError it
    raises. ``resolve_partial`` is called here only, so what it returns is fixed from now on.

    Problems of the template itself are raised here, as render() raises them when every
    variable is given a one-character value: a partial that cannot be resolved, is a chat
    prompt, closes a cycle or nests too deep, and text beyond MAX_RENDERED_CHARS with each tag
    counted as one character (so partials that multiply tags are refused, however short the
    values). With other values render() can differ only about the size limit: longer values
    may make it report the size before a partial problem; empty ones may keep it within the
    limit.
    """
    compiler = _Compiler(resolve_partial)
    template = content["template"]
    if isinstance(template, str):
        return compiler.build((("", compiler.format_string(content, template)),), chat=False)
    formats = tuple((m["role"], compiler.format_string(content, m["content"])) for m in template)
    return compiler.build(formats, chat=True)
