"""Load and validate the workspace's ``flow.yaml`` files for the local runner.

The runner executes a deliberately small OpenFlow subset and refuses everything else **at load
time**, naming the file, the module id and the construct (:class:`FlowLoadError`):

- flow keys: ``summary``, ``description``, ``schema``, ``value``; ``value`` keys: ``modules``,
  ``failure_module``;
- module keys: ``id``, ``summary``, ``value``, ``retry``, ``timeout``, ``stop_after_if``;
- ``value.type: script`` with ``path: f/…`` (the ``.py`` next to ``<path>.script.yaml``) and
  ``input_transforms``; ``value.type: rawscript`` with ``language: python3``,
  ``content: '!inline file.py'`` (relative to the flow folder), optional ``lock`` and
  ``input_transforms``;
- input transforms ``{type: static, value}`` (strings ``$res:f/…`` / ``$var:f/…`` resolved at run
  time) and ``{type: javascript, expr}`` where ``expr`` is a path expression
  (:mod:`chatmill.runner.expressions`);
- ``retry: {constant: {attempts, seconds}}`` and/or ``{exponential: {attempts, multiplier,
  seconds, random_factor}}``; ``timeout`` (seconds, > 0); ``stop_after_if: {expr,
  skip_if_stopped}``.

Each script's ``main`` signature is read with :mod:`ast` (nothing is imported at load time): every
input transform must name a parameter, and every parameter without a default must get one.
Branches, loops, other languages, ``skip_if``, ``sleep``, ``suspend``, arbitrary JavaScript and any
unknown key are refused.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chatmill.runner import expressions
from chatmill.runner.expressions import ExpressionError, Node

FLOW_SUFFIX = "__flow"
INPUT_ROOTS = frozenset({"flow_input", "results", "previous_result"})
FAILURE_INPUT_ROOTS = INPUT_ROOTS | {"error"}
STOP_ROOTS = frozenset({"result", "flow_input", "results", "previous_result"})
FAILURE_MODULE_ID = "failure"

_FLOW_KEYS = frozenset({"summary", "description", "schema", "value"})
_VALUE_KEYS = frozenset({"modules", "failure_module"})
_MODULE_KEYS = frozenset({"id", "summary", "value", "retry", "timeout", "stop_after_if"})
_SCRIPT_KEYS = frozenset({"type", "path", "input_transforms"})
_RAWSCRIPT_KEYS = frozenset({"type", "language", "content", "lock", "input_transforms"})


class FlowLoadError(ValueError):
    """A flow file the local runner cannot execute; the message names file, module and construct."""

    def __init__(self, file: Path | str, construct: str, *, module_id: str | None = None) -> None:
        where = f"{file}" + (f", module {module_id!r}" if module_id else "")
        super().__init__(f"{where}: {construct}")
        self.file = str(file)
        self.module_id = module_id
        self.construct = construct


@dataclass(frozen=True)
class Static:
    value: Any


@dataclass(frozen=True)
class Expr:
    source: str
    node: Node


Transform = Static | Expr


@dataclass(frozen=True)
class Retry:
    constant_attempts: int = 0
    constant_seconds: float = 0.0
    exponential_attempts: int = 0
    multiplier: float = 1.0
    base_seconds: float = 0.0
    random_factor: float = 0.0  # percent, 0..100

    @property
    def attempts(self) -> int:
        return self.constant_attempts + self.exponential_attempts

    def delay(self, retry_number: int, random: float = 0.5) -> float:
        """Wait before retry ``retry_number`` (1-based); ``random`` in [0, 1) spreads the jitter.

        Constant retries come first; the n-th retry overall then waits
        ``multiplier × base_seconds^n`` ± ``random_factor`` %, as Windmill does.
        """
        if retry_number <= self.constant_attempts:
            return self.constant_seconds
        delay = self.multiplier * self.base_seconds**retry_number
        if self.random_factor:
            delay *= 1 + (self.random_factor / 100) * (2 * random - 1)
        return max(0.0, delay)


@dataclass(frozen=True)
class StopAfterIf:
    source: str
    node: Node
    skip_if_stopped: bool


@dataclass(frozen=True)
class Module:
    id: str
    summary: str
    kind: str  # "script" | "rawscript"
    file: Path  # the .py to run
    module_name: str  # dotted import name, e.g. f.chatmill.load_context
    input_transforms: dict[str, Transform]
    retry: Retry | None = None
    timeout: float | None = None
    stop_after_if: StopAfterIf | None = None


@dataclass(frozen=True)
class Flow:
    path: str  # e.g. f/chatmill/handle_message
    file: Path
    summary: str
    schema: dict[str, Any]
    modules: tuple[Module, ...]
    failure_module: Module | None = None
    root: Path = field(default=Path("."))


def load_workspace(root: Path) -> dict[str, Flow]:
    """Every ``f/**/<name>__flow/flow.yaml`` under ``root``, keyed by flow path."""
    flows: dict[str, Flow] = {}
    for file in sorted((root / "f").rglob("flow.yaml")):
        if file.parent.name.endswith(FLOW_SUFFIX):
            flow = load_flow(file, root)
            flows[flow.path] = flow
    return flows


def flow_path_of(file: Path, root: Path) -> str:
    folder = file.parent.relative_to(root).as_posix()
    return folder.removesuffix(FLOW_SUFFIX)


def load_flow(file: Path, root: Path) -> Flow:
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FlowLoadError(file, f"cannot read the flow: {exc}") from exc
    if not isinstance(document, dict):
        raise FlowLoadError(file, "the flow file is not a mapping")
    _refuse_unknown(file, None, "flow", document, _FLOW_KEYS)
    value = document.get("value")
    if not isinstance(value, dict):
        raise FlowLoadError(file, "missing 'value' mapping")
    _refuse_unknown(file, None, "value", value, _VALUE_KEYS)
    raw_modules = value.get("modules")
    if not isinstance(raw_modules, list) or not raw_modules:
        raise FlowLoadError(file, "'value.modules' must be a non-empty list")
    modules: list[Module] = []
    seen: list[str] = []
    for raw in raw_modules:
        module = _load_module(file, root, raw, earlier=seen, roots=INPUT_ROOTS)
        modules.append(module)
        seen.append(module.id)
    failure = None
    if value.get("failure_module") is not None:
        failure = _load_module(
            file, root, value["failure_module"], earlier=seen, roots=FAILURE_INPUT_ROOTS, failure=True
        )
    schema = document.get("schema") or {}
    if not isinstance(schema, dict):
        raise FlowLoadError(file, "'schema' must be a mapping")
    return Flow(
        path=flow_path_of(file, root),
        file=file,
        summary=str(document.get("summary") or ""),
        schema=schema,
        modules=tuple(modules),
        failure_module=failure,
        root=root,
    )


def script_module(root: Path, path: str) -> Module:
    """A one-step pseudo flow running a workspace script directly (a schedule with is_flow false):
    each parameter of ``main`` takes the run argument of the same name (``flow_input.<name>``)."""
    file = _script_file(root, root / f"{path}.script.yaml", path, None)
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "main":
            names = [arg.arg for arg in [*node.args.args, *node.args.kwonlyargs]]
    transforms: dict[str, Transform] = {
        name: Expr(f"flow_input.{name}", expressions.parse(f"flow_input.{name}", INPUT_ROOTS))
        for name in names
    }
    return Module(
        id=path.rsplit("/", 1)[-1],
        summary="",
        kind="script",
        file=file,
        module_name=_dotted(file, root),
        input_transforms=transforms,
    )


def _refuse_unknown(
    file: Path, module_id: str | None, where: str, mapping: dict[str, Any], allowed: frozenset[str]
) -> None:
    for key in mapping:
        if key not in allowed:
            raise FlowLoadError(
                file,
                f"unsupported construct {where}.{key} (the local runner supports: {', '.join(sorted(allowed))})",
                module_id=module_id,
            )


def _load_module(
    file: Path,
    root: Path,
    raw: Any,
    *,
    earlier: list[str],
    roots: frozenset[str],
    failure: bool = False,
) -> Module:
    if not isinstance(raw, dict):
        raise FlowLoadError(file, "a module must be a mapping")
    module_id = raw.get("id")
    if failure:
        module_id = module_id or FAILURE_MODULE_ID
    if not isinstance(module_id, str) or not module_id:
        raise FlowLoadError(file, "a module has no 'id'")
    if module_id in earlier:
        raise FlowLoadError(file, "duplicate module id", module_id=module_id)
    _refuse_unknown(file, module_id, "module", raw, _MODULE_KEYS)
    value = raw.get("value")
    if not isinstance(value, dict):
        raise FlowLoadError(file, "missing module 'value'", module_id=module_id)
    kind = value.get("type")
    if kind == "script":
        _refuse_unknown(file, module_id, "value", value, _SCRIPT_KEYS)
        script = _script_file(root, file, value.get("path"), module_id)
    elif kind == "rawscript":
        _refuse_unknown(file, module_id, "value", value, _RAWSCRIPT_KEYS)
        if value.get("language") != "python3":
            raise FlowLoadError(
                file, f"unsupported language {value.get('language')!r} (only python3)", module_id=module_id
            )
        script = _inline_file(file, value.get("content"), module_id)
    else:
        raise FlowLoadError(
            file, f"unsupported module type {kind!r} (only script and rawscript)", module_id=module_id
        )
    transforms = _load_transforms(file, module_id, value.get("input_transforms"), earlier, roots, failure)
    _check_signature(file, module_id, script, transforms)
    timeout = raw.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise FlowLoadError(
            file, f"timeout must be a positive number of seconds, not {timeout!r}", module_id=module_id
        )
    return Module(
        id=module_id,
        summary=str(raw.get("summary") or ""),
        kind=kind,
        file=script,
        module_name=_dotted(script, root),
        input_transforms=transforms,
        retry=_load_retry(file, module_id, raw.get("retry")),
        timeout=float(timeout) if timeout is not None else None,
        stop_after_if=_load_stop(file, module_id, raw.get("stop_after_if"), earlier),
    )


def _script_file(root: Path, file: Path, path: Any, module_id: str | None) -> Path:
    if not isinstance(path, str) or not path.startswith("f/") or ".." in path.split("/"):
        raise FlowLoadError(
            file, f"script path must be a workspace path 'f/…', not {path!r}", module_id=module_id
        )
    script = root / f"{path}.py"
    metadata = root / f"{path}.script.yaml"
    if not script.is_file():
        raise FlowLoadError(file, f"script {path} not found ({script} is missing)", module_id=module_id)
    if not metadata.is_file():
        raise FlowLoadError(file, f"script {path} has no {metadata.name}", module_id=module_id)
    return script


def _inline_file(file: Path, content: Any, module_id: str) -> Path:
    prefix = "!inline "
    if not isinstance(content, str) or not content.startswith(prefix):
        raise FlowLoadError(
            file,
            "rawscript content must be '!inline <file>.py' (inline code is not supported)",
            module_id=module_id,
        )
    name = content[len(prefix) :].strip()
    script = (file.parent / name).resolve()
    if script.parent != file.parent.resolve() or script.suffix != ".py":
        raise FlowLoadError(
            file, f"inline file {name!r} must be a .py file in the flow folder", module_id=module_id
        )
    if not script.is_file():
        raise FlowLoadError(file, f"inline file {name!r} not found", module_id=module_id)
    return file.parent / name


def _dotted(script: Path, root: Path) -> str:
    return ".".join(script.relative_to(root).with_suffix("").parts)


def _load_transforms(
    file: Path,
    module_id: str,
    raw: Any,
    earlier: list[str],
    roots: frozenset[str],
    failure: bool,
) -> dict[str, Transform]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FlowLoadError(file, "input_transforms must be a mapping", module_id=module_id)
    transforms: dict[str, Transform] = {}
    for name, transform in raw.items():
        if not isinstance(transform, dict):
            raise FlowLoadError(file, f"input_transforms.{name} must be a mapping", module_id=module_id)
        kind = transform.get("type")
        if kind == "static":
            _refuse_unknown(
                file, module_id, f"input_transforms.{name}", transform, frozenset({"type", "value"})
            )
            transforms[name] = Static(transform.get("value"))
        elif kind == "javascript":
            _refuse_unknown(
                file, module_id, f"input_transforms.{name}", transform, frozenset({"type", "expr"})
            )
            source = transform.get("expr")
            try:
                node = expressions.parse(str(source), roots, path_only=True)
            except ExpressionError as exc:
                raise FlowLoadError(
                    file, f"input_transforms.{name}: unsupported javascript: {exc}", module_id=module_id
                ) from exc
            _check_results(file, module_id, node, earlier, failure)
            transforms[name] = Expr(str(source), node)
        else:
            raise FlowLoadError(
                file, f"input_transforms.{name}: unsupported transform type {kind!r}", module_id=module_id
            )
    return transforms


def _check_results(file: Path, module_id: str, node: Node, earlier: list[str], failure: bool) -> None:
    for path in expressions.paths(node):
        if path.root == "results":
            if not path.steps or not isinstance(path.steps[0][0], str):
                raise FlowLoadError(
                    file, f"'{path.text()}' must name a step: results.<step_id>", module_id=module_id
                )
            step = path.steps[0][0]
            if step not in earlier:
                where = "any module" if failure else "an earlier module"
                raise FlowLoadError(file, f"'{path.text()}' does not name {where}", module_id=module_id)
        if path.root == "previous_result" and not earlier and not failure:
            raise FlowLoadError(file, "previous_result in the first module", module_id=module_id)


def _check_signature(file: Path, module_id: str, script: Path, transforms: dict[str, Transform]) -> None:
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    except SyntaxError as exc:
        raise FlowLoadError(file, f"{script.name} does not parse: {exc}", module_id=module_id) from exc
    mains = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "main"
    ]
    if not mains:
        raise FlowLoadError(file, f"{script.name} has no top-level main()", module_id=module_id)
    args = mains[-1].args
    positional = [*args.posonlyargs, *args.args]
    names = [arg.arg for arg in positional] + [arg.arg for arg in args.kwonlyargs]
    if args.posonlyargs:
        raise FlowLoadError(
            file, f"{script.name}: main() must not take positional-only parameters", module_id=module_id
        )
    required = [arg.arg for arg in positional[: len(positional) - len(args.defaults)]]
    required += [
        arg.arg for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True) if default is None
    ]
    if args.kwarg is None:
        unknown = sorted(set(transforms) - set(names))
        if unknown:
            raise FlowLoadError(
                file,
                f"input_transforms {unknown} are not parameters of {script.name} main()",
                module_id=module_id,
            )
    missing = [name for name in required if name not in transforms]
    if missing:
        raise FlowLoadError(
            file,
            f"{script.name} main() requires {missing} but the module has no input_transforms for them",
            module_id=module_id,
        )


def _load_retry(file: Path, module_id: str, raw: Any) -> Retry | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise FlowLoadError(file, "retry must be a mapping", module_id=module_id)
    _refuse_unknown(file, module_id, "retry", raw, frozenset({"constant", "exponential"}))
    values: dict[str, float] = {}
    constant = raw.get("constant")
    if constant is not None:
        numbers = _numbers(file, module_id, "retry.constant", constant, {"attempts", "seconds"})
        values["constant_attempts"] = numbers.get("attempts", 0)
        values["constant_seconds"] = numbers.get("seconds", 0)
    exponential = raw.get("exponential")
    if exponential is not None:
        numbers = _numbers(
            file,
            module_id,
            "retry.exponential",
            exponential,
            {"attempts", "multiplier", "seconds", "random_factor"},
        )
        values["exponential_attempts"] = numbers.get("attempts", 0)
        values["multiplier"] = numbers.get("multiplier", 1)
        values["base_seconds"] = numbers.get("seconds", 0)
        values["random_factor"] = numbers.get("random_factor", 0)
        if not 0 <= values["random_factor"] <= 100:
            raise FlowLoadError(file, "retry.exponential.random_factor must be 0..100", module_id=module_id)
    retry = Retry(
        constant_attempts=int(values.get("constant_attempts", 0)),
        constant_seconds=float(values.get("constant_seconds", 0)),
        exponential_attempts=int(values.get("exponential_attempts", 0)),
        multiplier=float(values.get("multiplier", 1)),
        base_seconds=float(values.get("base_seconds", 0)),
        random_factor=float(values.get("random_factor", 0)),
    )
    return retry if retry.attempts else None


def _numbers(file: Path, module_id: str, where: str, raw: Any, allowed: set[str]) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise FlowLoadError(file, f"{where} must be a mapping", module_id=module_id)
    _refuse_unknown(file, module_id, where, raw, frozenset(allowed))
    out: dict[str, float] = {}
    for key, number in raw.items():
        if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
            raise FlowLoadError(file, f"{where}.{key} must be a non-negative number", module_id=module_id)
        out[key] = float(number)
    return out


def _load_stop(file: Path, module_id: str, raw: Any, earlier: list[str]) -> StopAfterIf | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise FlowLoadError(file, "stop_after_if must be a mapping", module_id=module_id)
    _refuse_unknown(
        file, module_id, "stop_after_if", raw, frozenset({"expr", "skip_if_stopped", "error_message"})
    )
    if raw.get("error_message"):
        raise FlowLoadError(file, "unsupported construct stop_after_if.error_message", module_id=module_id)
    source = raw.get("expr")
    try:
        node = expressions.parse(str(source), STOP_ROOTS)
    except ExpressionError as exc:
        raise FlowLoadError(
            file, f"stop_after_if: unsupported expression: {exc}", module_id=module_id
        ) from exc
    _check_results(file, module_id, node, [*earlier, module_id], failure=False)
    return StopAfterIf(str(source), node, bool(raw.get("skip_if_stopped", False)))
