"""compile_template: the same results and the same RenderErrors as render(), from format strings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from anvil_wire import (
    CompiledTemplate,
    PartialRef,
    RenderError,
    compile_template,
    normalize_content,
    parse_template,
    render,
)
from anvil_wire import prompts as prompts_module
from anvil_wire.prompts import MAX_PARTIAL_DEPTH, MAX_RENDERED_CHARS, Variable


def _content(template: Any, **variables: Any) -> dict[str, Any]:
    return normalize_content({"template": template, "variables": variables})


def _resolver(prompts: Mapping[str, Mapping[str, Any]]) -> Callable[[Mapping[str, Any], PartialRef], Any]:
    """Resolve a reference by its text; the same object for the same target, as render() needs."""

    def resolve(parent: Mapping[str, Any], ref: PartialRef) -> Mapping[str, Any]:
        if ref.text not in prompts:
            raise RenderError(f"no partial {ref.text}")
        return prompts[ref.text]

    return resolve


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("result", call())
    except RenderError as exc:
        return ("error", str(exc))


def _compiled_outcome(
    content: Mapping[str, Any], variables: Mapping[str, Any], resolve: Any
) -> tuple[str, Any, bool]:
    """The compiled outcome, and whether it was already compile_template that raised."""
    try:
        compiled = compile_template(content, resolve)
    except RenderError as exc:
        return ("error", str(exc), True)
    return (*_outcome(lambda: compiled.render(variables)), False)


class Loud(str):
    """A str subclass whose str() differs from its text."""

    def __str__(self) -> str:
        return self.upper() + "!"


class Formatted:
    """format(value, "") and str(value) differ: rendering must use str()."""

    def __format__(self, spec: str) -> str:
        return "formatted"

    def __str__(self) -> str:
        return "stringed"


# -- equivalence with render(), generated ------------------------------------------------------

VARIABLES = ("a", "b")
# Literal pieces: braces that str.format would read, backslashes that do or do not escape a tag.
# None ends in "{" or holds an unescaped "{{", so joined pieces always parse ("\\" then "\\{{a}}"
# makes a tag, whose variable is declared like any other).
TEXTS = ("hi ", "}", "}}", "{ ", "{0}", "{a!r} ", "\\{{a}}", "\\", "\\\\", "%s", "\n", "é", "x" * 25)
REFERENCES = ("p", "q", "s:r@2", "n1", "p", "s:r@2", "chat", "nowhere", "n0")
DEFAULTS = (None, "", "D", "{x}", "{{b}}")
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from([7, -1.5, None, True, "", Loud("hey"), Formatted()]),
)


def _pieces(references: tuple[str, ...], min_size: int) -> st.SearchStrategy[str]:
    tag = st.sampled_from(VARIABLES).flatmap(lambda v: st.sampled_from([f"{{{{{v}}}}}", f"{{{{ {v} }}}}"]))
    pieces = [st.sampled_from(TEXTS), tag, tag]
    if references:
        pieces.append(st.sampled_from(references).map(lambda r: f"{{{{> {r}}}}}"))
    return st.lists(st.one_of(pieces), min_size=min_size, max_size=6).map("".join)


@st.composite
def _prompt(draw: st.DrawFn, references: tuple[str, ...], chat: bool, min_size: int = 0) -> dict[str, Any]:
    """Normalized content over the variable pool: what it uses is declared, some more may be."""
    if chat:
        roles = st.sampled_from(["system", "user", "assistant"])
        message = st.fixed_dictionaries({"role": roles, "content": _pieces(references, min_size)})
        template: Any = draw(st.lists(message, min_size=1, max_size=3))
        texts = [m["content"] for m in template]
    else:
        template = draw(_pieces(references, min_size))
        texts = [template]
    used = {t.name for text in texts for t in parse_template(text) if isinstance(t, Variable)}
    declared = draw(st.lists(st.sampled_from(VARIABLES), unique=True))
    variables = {v: {"default": draw(st.sampled_from(DEFAULTS))} for v in sorted(used | set(declared))}
    return normalize_content({"template": template, "variables": variables})


@st.composite
def _library(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """Partials that may include each other (cycles), a chat prompt, and a chain for the depth limit."""
    library = {
        "p": draw(_prompt(("q", "s:r@2", "n2"), chat=False, min_size=1)),
        "q": draw(_prompt(("s:r@2", "p"), chat=False, min_size=1)),
        "s:r@2": draw(_prompt((), chat=False, min_size=1)),
    }
    library["chat"] = _content([{"role": "user", "content": "chat"}])
    chain = {f"n{i}": _content(f"{{{{> n{i + 1}}}}}") for i in range(MAX_PARTIAL_DEPTH)}
    chain[f"n{MAX_PARTIAL_DEPTH}"] = _content("end")
    return library | chain


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    library=_library(),
    root=st.booleans().flatmap(lambda chat: _prompt(REFERENCES, chat=chat)),
    variables=st.one_of(
        st.dictionaries(st.sampled_from((*VARIABLES, "zz")), VALUES, max_size=3),
        st.fixed_dictionaries(dict.fromkeys(VARIABLES, VALUES)),
    ),
    limit=st.sampled_from([MAX_RENDERED_CHARS, MAX_RENDERED_CHARS, 150, 30, 8]),
)
def test_generated_templates_render_exactly_as_render_does(library, root, variables, limit):
    resolve = _resolver(library)
    with mock.patch.object(prompts_module, "MAX_RENDERED_CHARS", limit):
        expected = _outcome(lambda: render(root, variables, resolve))
        event(f"render() limit {limit}: " + ("result" if expected[0] == "result" else expected[1][:20]))
        kind, value, at_compile = _compiled_outcome(root, variables, resolve)
        if at_compile:
            # Raised without values: what render() raises when every value is one character.
            one_character = dict.fromkeys(VARIABLES, "x")
            assert _outcome(lambda: render(root, one_character, resolve)) == ("error", value)
            # Other values can only change what render() says about the size limit.
            too_long = f"rendered text exceeds {limit} characters"
            assert expected == ("error", value) or too_long in (expected[1], value)
            if expected != ("error", value):
                event("compile_template and render() differ about the size limit")
        else:
            assert (kind, value) == expected


# -- explicit cases ----------------------------------------------------------------------------


def test_text_template_renders_like_render():
    content = _content("{{greeting}}, {{ name }}!", greeting={"default": "Hello"}, name={})
    compiled = compile_template(content)
    assert isinstance(compiled, CompiledTemplate)
    assert compiled.render({"name": "Ada"}) == render(content, {"name": "Ada"}) == "Hello, Ada!"
    assert compiled.render({"name": "Ada", "greeting": "Hi"}) == "Hi, Ada!"
    assert compiled.declared == {"greeting", "name"}


def test_chat_template_renders_fresh_messages_each_time():
    content = _content(
        [{"role": "system", "content": "Be {{tone}}."}, {"role": "user", "content": "{{q}}"}],
        tone={"default": "brief"},
        q={},
    )
    compiled = compile_template(content)
    first = compiled.render({"q": "Why?"})
    assert first == render(content, {"q": "Why?"})
    assert first == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]
    first[0]["content"] = "changed"
    assert compiled.render({"q": "Why?"})[0] == {"role": "system", "content": "Be brief."}


def test_partial_default_applies_inside_the_partial_only():
    prompts = {"footer": _content("[{{x}}|{{y}}]", x={"default": "partial-x"}, y={"default": "partial-y"})}
    content = _content("{{x}} {{> footer}} {{x}} {{y}}", x={"default": "root-x"}, y={})
    compiled = compile_template(content, _resolver(prompts))
    assert compiled.render({"y": "Y"}) == "root-x [partial-x|Y] root-x Y"
    assert compiled.render({"x": "X", "y": "Y"}) == "X [X|Y] X Y"
    assert compiled.render({"y": "Y"}) == render(content, {"y": "Y"}, _resolver(prompts))


def test_variable_required_in_root_but_defaulted_in_partial_is_missing_when_not_given():
    prompts = {"footer": _content("[{{x}}]", x={"default": "fx"})}
    content = _content("{{> footer}}{{x}}", x={})
    compiled = compile_template(content, _resolver(prompts))
    with pytest.raises(RenderError, match=r"^missing variable\(s\): x$"):
        compiled.render({})
    assert compiled.render({"x": 1}) == "[1]1"


def test_values_are_converted_with_str_not_format():
    content = _content("{{a}} {{b}} {{c}} {{d}}", a={}, b={}, c={}, d={})
    values = {"a": Loud("hey"), "b": Formatted(), "c": None, "d": 4.50}
    assert compile_template(content).render(values) == "HEY! stringed None 4.5"
    assert compile_template(content).render(values) == render(content, values)


def test_literal_braces_and_escaped_tags_stay_text():
    content = _content("{0} {a} }} { \\{{a}} \\\\{{a}} \\\\\\{{a}} C:\\path", a={})
    expected = "{0} {a} }} { {{a}} \\V \\{{a}} C:\\path"
    assert compile_template(content).render({"a": "V"}) == render(content, {"a": "V"}) == expected


def test_values_are_not_reinterpreted():
    content = _content("{{a}}", a={"default": "{b} {{b}}"})
    compiled = compile_template(content)
    assert compiled.render({}) == "{b} {{b}}"
    assert compiled.render({"a": "{0} {{> x}}"}) == "{0} {{> x}}"


def test_missing_variables_are_reported_in_first_use_order_once():
    prompts = {"inner": _content("{{c}}{{b}}", b={}, c={})}
    content = _content("{{b}}{{a}}{{> inner}}{{b}}{{d}}", a={}, b={}, d={"default": "D"})
    compiled = compile_template(content, _resolver(prompts))
    with pytest.raises(RenderError, match=r"^missing variable\(s\): b, c$") as caught:
        compiled.render({"a": "A"})
    with pytest.raises(RenderError) as expected:
        render(content, {"a": "A"}, _resolver(prompts))
    assert str(caught.value) == str(expected.value)


def test_unknown_variables_are_reported_sorted_after_missing_ones():
    prompts = {"inner": _content("{{p}}", p={})}
    content = _content("{{a}}{{> inner}}", a={})
    compiled = compile_template(content, _resolver(prompts))
    assert compiled.declared == {"a", "p"}
    with pytest.raises(RenderError, match=r"^unknown variable\(s\): y, z$"):
        compiled.render({"a": "1", "p": "2", "z": "3", "y": "4"})
    with pytest.raises(RenderError, match=r"^missing variable\(s\): p$"):
        compiled.render({"a": "1", "z": "3"})


def test_partial_cycle_is_refused_at_compile_time():
    prompts: dict[str, Any] = {}
    prompts["a"] = _content("A{{> b}}")
    prompts["b"] = _content("B{{> a}}")
    with pytest.raises(RenderError, match=r"^partial cycle at b > a$"):
        compile_template(prompts["a"], _resolver(prompts))


def test_partials_deeper_than_the_limit_are_refused_at_compile_time():
    prompts = {f"p{i}": _content(f"{{{{> p{i + 1}}}}}") for i in range(MAX_PARTIAL_DEPTH + 2)}
    prompts[f"p{MAX_PARTIAL_DEPTH + 2}"] = _content("end")
    with pytest.raises(RenderError, match="depth limit") as caught:
        compile_template(_content("{{> p0}}"), _resolver(prompts))
    with pytest.raises(RenderError) as expected:
        render(_content("{{> p0}}"), {}, _resolver(prompts))
    assert str(caught.value) == str(expected.value)


def test_partial_met_again_deeper_down_is_checked_against_the_depth_limit_again():
    # c1 > ... > c15 fits under the root (16 levels) but not under d1 > d2 (18 levels).
    prompts = {f"c{i}": _content(f"{{{{> c{i + 1}}}}}") for i in range(1, 15)}
    prompts["c15"] = _content("end")
    prompts["d1"] = _content("{{> d2}}")
    prompts["d2"] = _content("{{> c1}}")
    content = _content("{{> c1}} {{> d1}}")
    with pytest.raises(RenderError, match="depth limit") as caught:
        compile_template(content, _resolver(prompts))
    with pytest.raises(RenderError) as expected:
        render(content, {}, _resolver(prompts))
    assert str(caught.value) == str(expected.value)
    assert compile_template(_content("{{> c1}} {{> d2}} {{> c1}}"), _resolver(prompts)).render({}) == (
        "end end end"
    )


def test_partials_nested_up_to_the_limit_compile():
    prompts = {f"p{i}": _content(f"{{{{> p{i + 1}}}}}") for i in range(MAX_PARTIAL_DEPTH - 1)}
    prompts[f"p{MAX_PARTIAL_DEPTH - 1}"] = _content("end")
    assert compile_template(_content("{{> p0}}"), _resolver(prompts)).render({}) == "end"


def test_chat_prompt_as_partial_is_refused_at_compile_time():
    chat = _content([{"role": "user", "content": "x"}])
    with pytest.raises(RenderError, match=r"^partial 'chat' is a chat prompt; partials must be text$"):
        compile_template(_content("{{> chat}}"), _resolver({"chat": chat}))


def test_partial_without_resolver_or_target_is_refused_at_compile_time():
    with pytest.raises(RenderError, match=r"^partial 'footer' cannot be resolved here$"):
        compile_template(_content("{{> footer}}"))
    with pytest.raises(RenderError, match=r"^no partial footer$"):
        compile_template(_content("{{> footer}}"), _resolver({}))


def test_rendered_text_over_the_limit_is_refused():
    content = _content("ab{{a}}", a={})
    compiled = compile_template(content)
    assert len(compiled.render({"a": "x" * (MAX_RENDERED_CHARS - 2)})) == MAX_RENDERED_CHARS
    with pytest.raises(RenderError, match=rf"^rendered text exceeds {MAX_RENDERED_CHARS} characters$"):
        compiled.render({"a": "x" * (MAX_RENDERED_CHARS - 1)})


def test_size_limit_is_reported_before_missing_and_unknown_variables():
    content = _content([{"role": "user", "content": "{{a}}{{b}}"}], a={}, b={})
    compiled = compile_template(content)
    variables = {"a": "x" * (MAX_RENDERED_CHARS + 1), "zz": "unknown"}
    with pytest.raises(RenderError, match="exceeds"):
        render(content, variables)
    with pytest.raises(RenderError, match="exceeds"):
        compiled.render(variables)


def test_literal_text_over_the_limit_is_refused_at_compile_time():
    # Each level includes the next ten times: compiling stops where render() does.
    levels = {f"p{i}": _content(f"{{{{> p{i + 1}}}}}" * 10) for i in range(16)}
    levels["p16"] = _content("x" * 100)
    with pytest.raises(RenderError, match="exceeds"):
        compile_template(levels["p0"], _resolver(levels))


def test_partials_that_multiply_tags_are_refused_at_compile_time():
    # 10**16 tags if nothing stopped it: compiling cannot wait for values to find out.
    levels = {f"p{i}": _content(f"{{{{> p{i + 1}}}}}" * 10) for i in range(16)}
    levels["p16"] = _content("{{x}}", x={})
    with pytest.raises(RenderError, match=rf"^rendered text exceeds {MAX_RENDERED_CHARS} characters$"):
        compile_template(levels["p0"], _resolver(levels))


def test_tags_count_as_one_character_at_compile_time_though_values_may_be_empty():
    content = _content("{{a}}" * 9, a={})
    with mock.patch.object(prompts_module, "MAX_RENDERED_CHARS", 8):
        assert render(content, {"a": ""}) == ""
        with pytest.raises(RenderError, match="exceeds 8 characters"):
            render(content, {"a": "x"})
        with pytest.raises(RenderError, match="exceeds 8 characters"):
            compile_template(content)


def test_value_made_partial_over_the_limit_before_a_cycle_is_reported_as_the_cycle():
    prompts: dict[str, Any] = {"big": _content("{{a}}", a={})}
    prompts["loop"] = _content("{{> loop}}")
    content = _content("{{> big}}{{> loop}}")
    resolve = _resolver(prompts)
    with pytest.raises(RenderError, match="cycle"):
        render(content, {"a": "small"}, resolve)
    with pytest.raises(RenderError, match="exceeds"):
        render(content, {"a": "x" * (MAX_RENDERED_CHARS + 1)}, resolve)
    # compile_template has no values: it reports the cycle, which no values can avoid.
    with pytest.raises(RenderError, match="cycle"):
        compile_template(content, resolve)


def test_compiled_template_is_immutable():
    compiled = compile_template(_content("{{a}}", a={}))
    with pytest.raises(AttributeError):
        compiled.declared = frozenset()  # type: ignore[misc]
