"""The runner's expression language: the JavaScript subset flows use, evaluated without JavaScript."""

from __future__ import annotations

from typing import Any

import pytest

from chatmill.runner.expressions import UNDEFINED, ExpressionError, evaluate, parse, truthy

ROOTS = frozenset({"flow_input", "results", "previous_result", "result"})
CONTEXT: dict[str, Any] = {
    "flow_input": {"x": 1, "name": "Ana", "nested": {"y": [10, 20]}, "empty": [], "zero": 0, "none": None},
    "results": {"load": {"stop": True, "reason": "paused", "count": 3}},
    "previous_result": {"ok": True},
    "result": {"stop": False, "reason": None},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("flow_input.x", 1),
        ("flow_input.nested.y[1]", 20),
        ("flow_input['name']", "Ana"),
        ("results.load.reason", "paused"),
        ("previous_result.ok", True),
        ("flow_input.missing", UNDEFINED),
        ("flow_input.missing?.deeper", UNDEFINED),
        ("flow_input.missing ?? 'default'", "default"),
        ("flow_input.zero ?? 5", 0),
        ("flow_input.none ?? 5", 5),
        ("flow_input.nested.y.length", 2),
        ("results.load.stop == true", True),
        ("results.load.stop === true && results.load.count > 2", True),
        ("result.stop == true || result.reason == 'x'", False),
        ("!result.stop", True),
        ("!flow_input.empty", False),  # [] is truthy, as in JavaScript
        ("result.reason == undefined", True),  # null == undefined
        ("result.reason === undefined", False),
        ("flow_input.x != 1", False),
        ("flow_input.x == '1'", False),  # no coercion
        ('(flow_input.x == 1) && (flow_input.name != "Bob")', True),
        ("results.load.count >= 3 && results.load.count < 4.5", True),
        ("flow_input.name < 5", False),  # mixed types never compare
        ("'it\\'s'", "it's"),
        ("null", None),
    ],
)
def test_supported_expressions(source: str, expected: Any) -> None:
    assert evaluate(parse(source, ROOTS), CONTEXT) == expected or (
        expected is UNDEFINED and evaluate(parse(source, ROOTS), CONTEXT) is UNDEFINED
    )


@pytest.mark.parametrize(
    "source",
    [
        "flow_input.x + 1",
        "flow_input.items.map(x => x)",
        "Math.random()",
        "process.exit()",
        "flow_input.x ? 1 : 2",
        "`template ${flow_input.x}`",
        "flow_input[flow_input.key]",
        "flow_input.x; 1",
        "window.alert",
        "",
    ],
)
def test_anything_else_is_refused(source: str) -> None:
    with pytest.raises(ExpressionError):
        parse(source, ROOTS)


def test_path_only_mode_refuses_operators_but_accepts_defaults() -> None:
    parse("flow_input.x ?? results.load.count ?? 0", ROOTS, path_only=True)
    with pytest.raises(ExpressionError, match="not a path expression"):
        parse("flow_input.x == 1", ROOTS, path_only=True)
    with pytest.raises(ExpressionError, match="not a path expression"):
        parse("'literal'", ROOTS, path_only=True)


def test_reading_a_property_of_null_fails_like_javascript() -> None:
    with pytest.raises(ExpressionError, match="cannot read"):
        evaluate(parse("flow_input.missing.deeper", ROOTS), CONTEXT)


def test_truthiness_is_javascripts() -> None:
    assert [truthy(v) for v in (0, "", None, UNDEFINED, False, float("nan"))] == [False] * 6
    truthy_values: list[Any] = [1, "0", [], {}, True, -1.5]
    assert [truthy(v) for v in truthy_values] == [True] * 6
