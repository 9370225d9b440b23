"""The prompt format: names, template syntax, normal form, content digest, rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from anvil_wire import (
    PartialRef,
    PromptFormatError,
    RenderError,
    content_digest,
    is_prompt_name,
    is_slug,
    normalize_content,
    parse_reference,
    parse_template,
    render,
    template_references,
)
from anvil_wire.prompts import MAX_PARTIAL_DEPTH, Text, Variable, template_variables

# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["greeting", "support/greeting", "a.b_c-d", "0day", "a" * 63, "/".join(["ab"] * 8), "v1.2/x"],
)
def test_valid_prompt_names(name):
    assert is_prompt_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Greeting",
        "/a",
        "a/",
        "a//b",
        "-a",
        ".a",
        "_a",
        "a/../b",
        "a/./b",
        "a b",
        "a\n",
        "a\nb",
        "\na",
        "é",
        "a:b",
        "a@1",
        "a" * 64,
        "/".join(["ab"] * 9),
        "/".join(["a" * 40] * 6),  # more than 200 characters
        None,
        7,
    ],
)
def test_invalid_prompt_names(name):
    assert not is_prompt_name(name)


@pytest.mark.parametrize("slug", ["acme", "a", "a-b1", "a" * 63])
def test_valid_slugs(slug):
    assert is_slug(slug)


@pytest.mark.parametrize("slug", ["", "1a", "-a", "Acme", "a_b", "a.b", "acme\n", "a" * 64, None])
def test_invalid_slugs(slug):
    assert not is_slug(slug)


# -- references and templates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("footer", PartialRef("footer")),
        ("shared:footer", PartialRef("footer", project="shared")),
        ("footer@3", PartialRef("footer", version=3)),
        ("footer@prod", PartialRef("footer", environment="prod")),
        ("shared:mail/footer@12", PartialRef("mail/footer", project="shared", version=12)),
    ],
)
def test_partial_references_parse_and_print_back(text, ref):
    assert parse_reference(text) == ref
    assert ref.text == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Footer",
        "footer@0",
        "footer@03",
        "footer@",
        ":footer",
        "a:b:c",
        "Shared:footer",
        "footer@3\n",
        "a b",
    ],
)
def test_invalid_partial_references(text):
    with pytest.raises(PromptFormatError):
        parse_reference(text)


def test_template_splits_into_text_variables_and_partials():
    tokens = parse_template("Hi {{ name }}!\n{{>shared:footer@2}} {{x}}")
    assert tokens == [
        Text("Hi "),
        Variable("name"),
        Text("!\n"),
        PartialRef("footer", project="shared", version=2),
        Text(" "),
        Variable("x"),
    ]


def test_escaped_braces_are_literal_text():
    assert parse_template(r"literal \{{name}} and {{name}}") == [
        Text("literal {{name}} and "),
        Variable("name"),
    ]
    assert parse_template(r"\{{") == [Text("{{")]
    assert parse_template("closing }} alone") == [Text("closing }} alone")]


@pytest.mark.parametrize(
    ("template", "line"),
    [("{{name", 1), ("ok {{a}}\nthen {{ b", 2), ("a\nb\nc {{", 3), ("{{a}} \\{{ x {{", 1)],
)
def test_unclosed_tag_is_reported_with_its_line(template, line):
    with pytest.raises(PromptFormatError, match=rf"line {line}: unclosed"):
        parse_template(template)


@pytest.mark.parametrize(
    ("template", "line"),
    [("{{}}", 1), ("x\n{{ 1abc }}", 2), ("a\nb\n{{ a b }}", 3), ("{{ a-b }}", 1), ("{{#if}}", 1)],
)
def test_bad_tag_is_reported_with_its_line(template, line):
    with pytest.raises(PromptFormatError, match=rf"line {line}:"):
        parse_template(template)


@pytest.mark.parametrize("template", ["{{>}}", "{{> Bad}}", "{{> a@0}}", "{{> a b}}"])
def test_bad_partial_tag_is_a_format_error(template):
    with pytest.raises(PromptFormatError):
        parse_template(template)


# -- normal form and digest --------------------------------------------------------------------


def test_normal_form_fills_defaults():
    assert normalize_content({"template": "Hi {{name}}", "variables": {"name": None}}) == {
        "template": "Hi {{name}}",
        "variables": {"name": {"default": None, "description": ""}},
        "model": None,
        "metadata": {},
    }


def test_normal_form_keeps_model_and_metadata():
    normal = normalize_content(
        {
            "template": "x",
            "model": {"provider": "openai", "name": "gpt-x", "parameters": {"temperature": 0.2}},
            "metadata": {"owner": "team-a"},
            "variables": {"v": {"description": "what", "default": "d"}},
        }
    )
    assert normal["model"] == {"provider": "openai", "name": "gpt-x", "parameters": {"temperature": 0.2}}
    assert normal["variables"] == {"v": {"default": "d", "description": "what"}}
    assert normal["metadata"] == {"owner": "team-a"}
    assert normalize_content({"template": "x", "model": {"provider": "p", "name": "n"}})["model"] == {
        "provider": "p",
        "name": "n",
        "parameters": {},
    }


def test_normal_form_is_idempotent():
    raw = {"template": [{"role": "system", "content": "{{a}}"}], "variables": {"a": {"default": "z"}}}
    normal = normalize_content(raw)
    assert normalize_content(normal) == normal


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"template": "x", "id": 1}, "unknown content member"),
        ({"template": "x", "parent": None, "origin": "y"}, "unknown content member"),
        ({"variables": {}}, "needs a 'template'"),
        ({"template": "Hi {{name}}"}, "undeclared variable"),
        ({"template": [{"role": "user", "content": "{{who}}"}]}, "undeclared variable"),
        ({"template": 5}, "template must be"),
        ({"template": []}, "template must be"),
        ({"template": [{"role": "tool", "content": "x"}]}, "role must be one of"),
        ({"template": [{"role": "System", "content": "x"}]}, "role must be one of"),
        ({"template": [{"role": "user", "content": "x", "name": "bob"}]}, "exactly 'role' and 'content'"),
        ({"template": [{"role": "user"}]}, "exactly 'role' and 'content'"),
        ({"template": [{"role": "user", "content": 3}]}, "content must be a string"),
        ({"template": ["hello"]}, "exactly 'role' and 'content'"),
        ({"template": "x", "variables": []}, "variables must be an object"),
        ({"template": "x", "variables": {"1a": {}}}, "invalid variable name"),
        ({"template": "x", "variables": {"a\n": {}}}, "invalid variable name"),
        ({"template": "x", "variables": {"a": {"type": "str"}}}, "only 'description' and 'default'"),
        ({"template": "x", "variables": {"a": {"default": 3}}}, "must be strings"),
        ({"template": "x", "variables": {"a": "default"}}, "only 'description' and 'default'"),
        ({"template": "x", "model": "gpt"}, "model must be an object"),
        ({"template": "x", "model": {"provider": "p"}}, "non-empty strings"),
        ({"template": "x", "model": {"provider": "p", "name": "n", "temperature": 1}}, "model must be"),
        ({"template": "x", "model": {"provider": "p", "name": "n", "parameters": [1]}}, "parameters"),
        (
            {"template": "x", "model": {"provider": "p", "name": "n", "parameters": {"t": float("nan")}}},
            "canonical",
        ),
        ({"template": "x", "metadata": ["a"]}, "metadata must be an object"),
        ({"template": "x", "metadata": ""}, "metadata must be an object"),
        ({"template": "x {{"}, "unclosed"),
    ],
)
def test_invalid_content_is_refused(content, message):
    with pytest.raises(PromptFormatError, match=message):
        normalize_content(content)


def test_content_that_is_not_an_object_is_refused():
    with pytest.raises(PromptFormatError):
        normalize_content(["template"])  # type: ignore[arg-type]


def test_chat_prompt_normal_form_keeps_message_order():
    messages = [
        {"content": "be brief", "role": "system"},
        {"role": "developer", "content": "d"},
        {"role": "user", "content": "{{q}}"},
        {"role": "assistant", "content": "ok"},
    ]
    normal = normalize_content({"template": messages, "variables": {"q": {}}})
    assert [m["role"] for m in normal["template"]] == ["system", "developer", "user", "assistant"]
    assert template_variables(normal) == ["q"]


def test_content_digest_is_stable_and_independent_of_dict_order():
    one = {
        "template": "Hi {{b}} {{a}}",
        "variables": {"a": {"default": "x", "description": "A"}, "b": {}},
        "model": {"provider": "p", "name": "n", "parameters": {"t": 1, "k": [1, 2]}},
        "metadata": {"z": 1, "y": 2},
    }
    two = {
        "metadata": {"y": 2, "z": 1},
        "model": {"parameters": {"k": [1, 2], "t": 1}, "name": "n", "provider": "p"},
        "variables": {"b": None, "a": {"description": "A", "default": "x"}},
        "template": "Hi {{b}} {{a}}",
    }
    assert content_digest(one) == content_digest(two) == content_digest(normalize_content(one))
    assert content_digest({"template": "x"}) == content_digest(
        {"template": "x", "variables": {}, "model": None, "metadata": {}}
    )


def test_content_digest_is_pinned():
    """A changed digest would orphan every stored version and signed revision: pin one."""
    assert content_digest({"template": "Hello {{name}}", "variables": {"name": {}}}) == (
        "sha256:"
        + __import__("hashlib")
        .sha256(
            b'{"metadata":{},"model":null,"template":"Hello {{name}}",'
            b'"variables":{"name":{"default":null,"description":""}}}'
        )
        .hexdigest()
    )


def test_any_content_change_changes_the_digest():
    base = {"template": "x {{a}}", "variables": {"a": {}}}
    variants = [
        {**base, "template": "x  {{a}}"},
        {**base, "variables": {"a": {"default": "d"}}},
        {**base, "variables": {"a": {"description": "d"}}},
        {**base, "metadata": {"k": "v"}},
        {**base, "model": {"provider": "p", "name": "n"}},
        {"template": [{"role": "user", "content": "x {{a}}"}], "variables": {"a": {}}},
    ]
    digests = {content_digest(v) for v in variants} | {content_digest(base)}
    assert len(digests) == len(variants) + 1


def test_template_references_are_deduplicated_in_first_use_order():
    normal = normalize_content(
        {
            "template": [
                {"role": "system", "content": "{{> b}}{{> a@2}}"},
                {"role": "user", "content": "{{> b}}"},
            ]
        }
    )
    assert [r.text for r in template_references(normal)] == ["b", "a@2"]


# -- rendering ---------------------------------------------------------------------------------


def _content(template: Any, **variables: Any) -> dict[str, Any]:
    return normalize_content({"template": template, "variables": variables})


def test_render_substitutes_variables_and_defaults():
    content = _content("{{greeting}}, {{name}}! \\{{literal}}", greeting={"default": "Hello"}, name={})
    assert render(content, {"name": "Ada"}) == "Hello, Ada! {{literal}}"
    assert render(content, {"name": "Ada", "greeting": "Hi"}) == "Hi, Ada! {{literal}}"
    assert render(content, {"name": 42}) == "Hello, 42! {{literal}}"


def test_render_does_not_reinterpret_substituted_values():
    content = _content("{{a}}", a={})
    assert render(content, {"a": "{{b}} {{> x}}"}) == "{{b}} {{> x}}"


def test_render_refuses_a_missing_variable():
    content = _content("{{a}} {{b}} {{a}}", a={}, b={"default": "B"})
    with pytest.raises(RenderError, match=r"missing variable.*: a$"):
        render(content, {})


def test_render_refuses_an_unknown_variable():
    content = _content("{{a}}", a={})
    with pytest.raises(RenderError, match=r"unknown variable.*: zz"):
        render(content, {"a": "1", "zz": "2"})


def test_render_refuses_a_partial_without_a_resolver():
    with pytest.raises(RenderError, match="cannot be resolved"):
        render(_content("{{> footer}}"), {})


def _resolver(prompts: Mapping[str, Mapping[str, Any]]):
    def resolve(parent: Mapping[str, Any], ref: PartialRef) -> Mapping[str, Any]:
        if ref.text not in prompts:
            raise RenderError(f"no partial {ref.text}")
        return prompts[ref.text]

    return resolve


def test_render_resolves_nested_partials_and_their_variables():
    prompts = {
        "footer": _content("-- {{team}} {{> legal@2}}", team={"default": "Acme"}),
        "legal@2": _content("(c) {{year}}", year={}),
    }
    content = _content("Hi {{name}}\n{{> footer}}", name={})
    assert render(content, {"name": "Ada", "year": "2026"}, _resolver(prompts)) == "Hi Ada\n-- Acme (c) 2026"
    # A variable a partial declares is known to the render, not "unknown".
    assert (
        render(content, {"name": "Ada", "year": "1", "team": "T"}, _resolver(prompts)) == "Hi Ada\n-- T (c) 1"
    )
    with pytest.raises(RenderError, match=r"missing variable.*year"):
        render(content, {"name": "Ada"}, _resolver(prompts))


def test_render_refuses_a_missing_partial():
    with pytest.raises(RenderError, match="no partial"):
        render(_content("{{> nowhere}}"), {}, _resolver({}))


def test_render_refuses_a_partial_cycle():
    prompts: dict[str, Any] = {}
    prompts["a"] = _content("A{{> b}}")
    prompts["b"] = _content("B{{> a}}")
    with pytest.raises(RenderError, match="cycle"):
        render(prompts["a"], {}, _resolver(prompts))
    with pytest.raises(RenderError, match="cycle"):
        render(_content("{{> self}}"), {}, _resolver({"self": _content("{{> self}}")}))


def test_render_refuses_partials_nested_deeper_than_the_limit():
    prompts = {f"p{i}": _content(f"{{{{> p{i + 1}}}}}") for i in range(MAX_PARTIAL_DEPTH + 2)}
    prompts[f"p{MAX_PARTIAL_DEPTH + 2}"] = _content("end")
    with pytest.raises(RenderError, match="depth"):
        render(_content("{{> p0}}"), {}, _resolver(prompts))


def test_render_accepts_partials_nested_up_to_the_limit():
    prompts = {f"p{i}": _content(f"{{{{> p{i + 1}}}}}") for i in range(MAX_PARTIAL_DEPTH - 1)}
    prompts[f"p{MAX_PARTIAL_DEPTH - 1}"] = _content("end")
    assert render(_content("{{> p0}}"), {}, _resolver(prompts)) == "end"


def test_the_same_reference_text_in_another_project_is_not_a_cycle():
    """``{{> header}}`` means the header of the project the template lives in: web:header
    including shared:wrapper including shared:header is a chain, not a loop."""
    project: dict[int, str] = {}
    prompts: dict[tuple[str, str], dict[str, Any]] = {}

    def add(slug: str, name: str, template: str) -> dict[str, Any]:
        content = _content(template)
        project[id(content)] = slug
        prompts[(slug, name)] = content
        return content

    main = add("web", "main", "{{> header}}")
    add("web", "header", "[{{> shared:wrapper}}]")
    add("shared", "wrapper", "<{{> header}}>")
    add("shared", "header", "H")

    def resolve(parent: Mapping[str, Any], ref: PartialRef) -> Mapping[str, Any]:
        return prompts[(ref.project or project[id(parent)], ref.name)]

    assert render(main, {}, resolve) == "[<H>]"


def test_render_refuses_a_chat_prompt_as_partial():
    chat = _content([{"role": "user", "content": "x"}])
    with pytest.raises(RenderError, match="chat prompt"):
        render(_content("{{> chat}}"), {}, _resolver({"chat": chat}))


def test_render_chat_prompt_renders_every_message():
    content = _content(
        [
            {"role": "system", "content": "You are {{persona}}. {{> rules}}"},
            {"role": "user", "content": "{{question}}"},
        ],
        persona={"default": "helpful"},
        question={},
    )
    rules = {"rules": _content("Answer in {{lang}}.", lang={"default": "English"})}
    assert render(content, {"question": "Why?"}, _resolver(rules)) == [
        {"role": "system", "content": "You are helpful. Answer in English."},
        {"role": "user", "content": "Why?"},
    ]
    with pytest.raises(RenderError, match=r"missing variable.*question"):
        render(content, {}, _resolver(rules))


@pytest.mark.parametrize(
    ("template", "tokens"),
    [
        ("a \\{{x}} b", [Text("a {{x}} b")]),
        ("a \\\\{{x}} b", [Text("a \\"), Variable("x"), Text(" b")]),
        ("a \\\\\\{{x}} b", [Text("a \\{{x}} b")]),
        ("C:\\path {{x}}", [Text("C:\\path "), Variable("x")]),
        ("\\\\\\\\{{x}}", [Text("\\\\"), Variable("x")]),
    ],
)
def test_backslashes_escape_only_in_front_of_a_tag(template, tokens):
    assert parse_template(template) == tokens


def test_partials_that_multiply_are_stopped_by_the_output_limit():
    # Each level includes the next ten times: 10**16 copies at depth 16 if nothing stopped it.
    levels = {f"p{i}": normalize_content({"template": f"{{{{> p{i + 1}}}}}" * 10}) for i in range(16)}
    levels["p16"] = normalize_content({"template": "x" * 100})

    def resolve(_parent, ref):
        return levels[ref.name]

    with pytest.raises(RenderError, match="exceeds"):
        render(levels["p0"], {}, resolve)
