"""The expression language the local runner accepts where OpenFlow has JavaScript.

Parsed by a small recursive-descent parser and evaluated over JSON values; no JavaScript engine is
involved, so nothing outside this grammar can run.

Grammar (whitespace between tokens is ignored)::

    expr     := nullish
    nullish  := or ( "??" or )*
    or       := and ( "||" and )*
    and      := equality ( "&&" equality )*
    equality := relation ( ("==" | "!=" | "===" | "!==") relation )?
    relation := unary ( ("<" | "<=" | ">" | ">=") unary )?
    unary    := "!" unary | primary
    primary  := literal | path | "(" expr ")"
    path     := ROOT ( "." NAME | "?." NAME | "[" STRING "]" | "[" INTEGER "]" )*
    literal  := 'single' | "double" quoted string (\\ escapes \\\\ \\' \\" \\n \\t)
              | integer or decimal number | true | false | null | undefined

Roots depend on the place: input transforms accept ``flow_input``, ``results``, ``previous_result``
(and ``error`` in the failure module) and only a path, optionally with literal or path defaults
(``path ?? "default"``), and no other operator; ``stop_after_if``
accepts the full grammar with roots ``result`` (the step's own result), ``flow_input``,
``results``, ``previous_result``.

Semantics follow JavaScript where it matters: a missing property is ``undefined``; reading a property
of ``undefined``/``null`` is an error unless ``?.`` is used; ``!``, ``&&``, ``||`` use JavaScript
truthiness (``[]`` and ``{}`` are truthy; ``0``, ``""``, ``null``, ``undefined`` are falsy) and ``&&``
/ ``||`` return an operand, like JavaScript; ``a ?? b`` is ``b`` only when ``a`` is ``null``/``undefined``; ``===``/``!==`` compare type and value; ``==``/``!=``
do the same except that ``null == undefined``; ``<`` etc. compare two numbers or two strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ExpressionError(ValueError):
    """An expression outside the supported grammar (at load time) or that failed to evaluate."""


class _Undefined:
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Path:
    root: str
    # (name-or-index, optional): ``?.`` marks the step optional
    steps: tuple[tuple[str | int, bool], ...]

    def text(self) -> str:
        out = self.root
        for key, optional in self.steps:
            out += ("?." if optional else ".") + str(key) if isinstance(key, str) else f"[{key}]"
        return out


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Literal | Path | Not | Binary

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+(?:\.\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
      | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||\?\?|\?\.|[.!()<>\[\]])
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}
_KEYWORDS = {"true": True, "false": False, "null": None, "undefined": UNDEFINED}


def _tokenize(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    source = source.strip()
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            raise ExpressionError(f"unsupported syntax at {source[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
        while position < len(source) and source[position].isspace():
            position += 1
    return tokens


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


class _Parser:
    def __init__(self, source: str, roots: frozenset[str]) -> None:
        self.source = source
        self.roots = roots
        self.tokens = _tokenize(source)
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            expected = f"{value!r}" if value else "more input"
            raise ExpressionError(f"expected {expected} in {self.source!r}")
        self.position += 1
        return token

    def parse(self) -> Node:
        node = self.nullish()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.source!r}")  # type: ignore[index]
        return node

    def nullish(self) -> Node:
        node = self.or_()
        while self.peek() == ("op", "??"):
            self.take()
            node = Binary("??", node, self.or_())
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            node = Binary("||", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.equality()
        while self.peek() == ("op", "&&"):
            self.take()
            node = Binary("&&", node, self.equality())
        return node

    def equality(self) -> Node:
        node = self.relation()
        token = self.peek()
        if token is not None and token[1] in ("==", "!=", "===", "!=="):
            self.take()
            node = Binary(token[1], node, self.relation())
        return node

    def relation(self) -> Node:
        node = self.unary()
        token = self.peek()
        if token is not None and token[1] in ("<", "<=", ">", ">="):
            self.take()
            node = Binary(token[1], node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == ("op", "!"):
            self.take()
            return Not(self.unary())
        return self.primary()

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "number":
            return Literal(float(value) if "." in value else int(value))
        if kind == "string":
            return Literal(_unquote(value))
        if kind == "name":
            if value in _KEYWORDS:
                return Literal(_KEYWORDS[value])
            if value not in self.roots:
                allowed = ", ".join(sorted(self.roots))
                raise ExpressionError(f"unknown name {value!r} in {self.source!r} (allowed: {allowed})")
            return self.path(value)
        if value == "(":
            node = self.nullish()
            self.take(")")
            return node
        raise ExpressionError(f"unsupported token {value!r} in {self.source!r}")

    def path(self, root: str) -> Path:
        steps: list[tuple[str | int, bool]] = []
        while (token := self.peek()) is not None and token[1] in (".", "?.", "["):
            self.take()
            if token[1] == "[":
                kind, value = self.take()
                if kind == "string":
                    steps.append((_unquote(value), False))
                elif kind == "number" and value.isdigit():
                    steps.append((int(value), False))
                else:
                    raise ExpressionError(f"only literal keys inside [...] in {self.source!r}")
                self.take("]")
            else:
                kind, value = self.take()
                if kind != "name":
                    raise ExpressionError(f"expected a property name after {token[1]!r} in {self.source!r}")
                steps.append((value, token[1] == "?."))
        return Path(root, tuple(steps))


def parse(source: str, roots: frozenset[str], *, path_only: bool = False) -> Node:
    """Parse ``source``; ``path_only`` accepts a single path expression and nothing else."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("empty expression")
    node = _Parser(source, roots).parse()
    if path_only and not _is_path_with_defaults(node):
        raise ExpressionError(
            f"{source!r} is not a path expression (only e.g. flow_input.x, results.step.field, "
            "flow_input.x ?? 'default')"
        )
    return node


def _is_path_with_defaults(node: Node) -> bool:
    if isinstance(node, Path):
        return True
    if isinstance(node, Binary) and node.op == "??":
        return _is_path_with_defaults(node.left) and (
            isinstance(node.right, Literal) or _is_path_with_defaults(node.right)
        )
    return False


def paths(node: Node) -> list[Path]:
    """Every path referenced by ``node`` (for load-time checks of ``results.<id>``)."""
    if isinstance(node, Path):
        return [node]
    if isinstance(node, Not):
        return paths(node.operand)
    if isinstance(node, Binary):
        return paths(node.left) + paths(node.right)
    return []


def truthy(value: Any) -> bool:
    """JavaScript truthiness."""
    if value is None or value is UNDEFINED or value is False:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return value != 0 and value == value  # NaN is falsy
    if isinstance(value, str):
        return value != ""
    return True


def _strict_equal(left: Any, right: Any) -> bool:
    if left is UNDEFINED or right is UNDEFINED:
        return left is right
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if type(left) is not type(right):
        return False
    if isinstance(left, dict | list):
        return left is right  # JavaScript compares objects by identity
    return bool(left == right)


def evaluate(node: Node, context: Mapping[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Path):
        return _resolve(node, context)
    if isinstance(node, Not):
        return not truthy(evaluate(node.operand, context))
    if node.op == "&&":
        left = evaluate(node.left, context)
        return evaluate(node.right, context) if truthy(left) else left
    if node.op == "||":
        left = evaluate(node.left, context)
        return left if truthy(left) else evaluate(node.right, context)
    if node.op == "??":
        left = evaluate(node.left, context)
        return evaluate(node.right, context) if left is None or left is UNDEFINED else left
    left, right = evaluate(node.left, context), evaluate(node.right, context)
    if node.op in ("===", "!=="):
        return _strict_equal(left, right) == (node.op == "===")
    if node.op in ("==", "!="):
        nullish = (left is None or left is UNDEFINED) and (right is None or right is UNDEFINED)
        return (nullish or _strict_equal(left, right)) == (node.op == "==")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    strings = isinstance(left, str) and isinstance(right, str)
    if not (numbers or strings):
        return False  # JavaScript would coerce; we refuse to guess and answer false
    if node.op == "<":
        return bool(left < right)
    if node.op == "<=":
        return bool(left <= right)
    if node.op == ">":
        return bool(left > right)
    return bool(left >= right)


def _resolve(path: Path, context: Mapping[str, Any]) -> Any:
    value = context.get(path.root, UNDEFINED)
    walked = path.root
    for key, optional in path.steps:
        if value is None or value is UNDEFINED:
            if optional:
                return UNDEFINED
            raise ExpressionError(f"cannot read {key!r} of {value!r} ({walked})")
        if isinstance(value, dict):
            value = value.get(str(key), UNDEFINED)
        elif isinstance(value, list) and isinstance(key, int):
            value = value[key] if 0 <= key < len(value) else UNDEFINED
        elif isinstance(value, list | str) and key == "length":
            value = len(value)
        else:
            value = UNDEFINED
        walked += f".{key}"
    return value
