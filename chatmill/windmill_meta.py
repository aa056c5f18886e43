"""``chatmill windmill-metadata``: regenerate the Windmill workspace's metadata and locks, offline.

Windmill's own ``wmill generate-metadata`` needs a server; this does the same for our scripts from
the code and the tested environment:

- for every workspace script (a ``.py`` under ``windmill_scripts/f/`` with a top-level ``main``,
  outside ``lib/`` and outside ``*__flow/`` folders) its ``.script.yaml``: summary and description
  from the module docstring, ``kind: script``, the inline lock reference, and the JSON schema of
  ``main``'s parameters as Windmill derives it (``str`` → string, ``int`` → integer, ``float`` →
  number, ``bool`` → boolean, ``dict``/``Mapping`` → object, ``list[X]`` → array, a lowercase
  ``TypedDict`` class such as ``postgresql`` → ``{"type": "object", "format": "resource-postgresql"}``;
  parameters without a default are required);
- for every script and every inline flow step (``lock: '!inline x.lock'`` in a ``flow.yaml``) its
  lock: ``# py: 3.11`` and the pinned ``name==version`` of every third-party distribution it imports,
  directly or through ``f.chatmill.lib`` modules, with their requirements, as installed here.

``--check`` writes nothing and fails listing the stale files (a test runs it).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

WORKSPACE = Path(__file__).resolve().parent.parent / "windmill_scripts"
PYPROJECT = WORKSPACE.parent / "pyproject.toml"
PYTHON = "3.11"
_SIMPLE_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_OBJECT_TYPES = {"dict", "Dict", "Mapping", "MutableMapping", "Any", "object"}


@dataclass(frozen=True)
class Generated:
    path: Path
    content: str


def scripts(root: Path = WORKSPACE) -> list[Path]:
    """Workspace scripts: ``.py`` files with a top-level ``main`` outside lib/ and flow folders."""
    found = []
    for path in sorted((root / "f").rglob("*.py")):
        relative = path.relative_to(root).parts
        if (
            "lib" in relative
            or any(part.endswith("__flow") for part in relative)
            or path.name == "__init__.py"
        ):
            continue
        if _main(ast.parse(path.read_text())) is not None:
            found.append(path)
    return found


def _main(tree: ast.Module) -> ast.FunctionDef | None:
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"), None)


def schema(path: Path) -> dict[str, Any]:
    tree = ast.parse(path.read_text())
    main = _main(tree)
    if main is None:
        raise ValueError(f"{path} has no main()")
    resources = {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and node.name.islower()
        and any(isinstance(base, ast.Name) and base.id == "TypedDict" for base in node.bases)
    }
    arguments = main.args.args
    defaults: list[ast.expr | None] = [None] * (len(arguments) - len(main.args.defaults)) + list(
        main.args.defaults
    )
    properties: dict[str, Any] = {}
    required: list[str] = []
    for argument, default in zip(arguments, defaults, strict=True):
        prop = _json_type(argument.annotation, resources)
        prop["description"] = ""
        if default is None:
            prop["default"] = None
            required.append(argument.arg)
        else:
            prop["default"] = ast.literal_eval(default)
        properties[argument.arg] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
    }


def _json_type(annotation: ast.expr | None, resources: set[str]) -> dict[str, Any]:
    if annotation is None:
        return {"type": "object"}
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):  # X | None
        left, right = annotation.left, annotation.right
        chosen = right if isinstance(left, ast.Constant) and left.value is None else left
        return _json_type(chosen, resources)
    if isinstance(annotation, ast.Name):
        if annotation.id in resources:
            return {"type": "object", "format": f"resource-{annotation.id}"}
        if annotation.id in _SIMPLE_TYPES:
            return {"type": _SIMPLE_TYPES[annotation.id]}
        if annotation.id in {"list", "List"}:
            return {"type": "array", "items": {"type": "object"}}
        return {"type": "object"}
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        name = annotation.value.id
        if name in {"list", "List", "Sequence"}:
            return {"type": "array", "items": _json_type(annotation.slice, resources)}
        if name in _OBJECT_TYPES:
            return {"type": "object"}
    return {"type": "object"}


def metadata(path: Path, root: Path = WORKSPACE) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text())) or path.stem
    summary, _, rest = docstring.partition("\n")
    description = " ".join(rest.split("\n\n")[0].split()) if rest.strip() else ""
    relative = path.relative_to(root).with_suffix("")
    document = {
        "summary": summary.strip(),
        "description": description,
        "lock": f"!inline {relative}.script.lock",
        "kind": "script",
        "schema": schema(path),
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def lock(path: Path, root: Path = WORKSPACE) -> str:
    distributions = _closure(_third_party_imports(path, root))
    lines = [f"# py: {PYTHON}", *(f"{name}=={version}" for name, version in sorted(distributions.items()))]
    return "\n".join(lines) + "\n"


def _third_party_imports(path: Path, root: Path, seen: set[Path] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if path in seen:
        return set()
    seen.add(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            top = name.split(".")[0]
            if top == "f":
                module = root.joinpath(*name.split(".")).with_suffix(".py")
                if module.exists():
                    found |= _third_party_imports(module, root, seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def _root_extras() -> dict[str, set[str]]:
    """Extras our pyproject asks for (``psycopg[binary,pool]``): the locks must carry them too."""
    text = PYPROJECT.read_text()
    extras: dict[str, set[str]] = {}
    for spec in re.findall(r'^\s*"([^"]+)",?\s*$', text, flags=re.MULTILINE):
        try:
            requirement = Requirement(spec)
        except ValueError:
            continue
        extras.setdefault(_canonical(requirement.name), set()).update(requirement.extras)
    return extras


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _owners() -> dict[str, list[str]]:
    return dict(md.packages_distributions())


def _closure(modules: set[str]) -> dict[str, str]:
    owners = _owners()
    wanted_extras = _root_extras()
    pending: list[tuple[str, frozenset[str]]] = []
    for module in sorted(modules):
        for distribution in owners.get(module, []):
            name = _canonical(distribution)
            pending.append((name, frozenset(wanted_extras.get(name, set()))))
    pinned: dict[str, str] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        if (name, extras) in visited:
            continue
        visited.add((name, extras))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        pinned[dist.metadata["Name"]] = dist.version
        for spec in dist.requires or []:
            requirement = Requirement(spec)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                pending.append((_canonical(requirement.name), frozenset(requirement.extras)))
    return pinned


def inline_locks(root: Path = WORKSPACE) -> list[tuple[Path, Path]]:
    """(script, lock file) for every inline flow step with a lock."""
    pairs = []
    for flow in sorted((root / "f").rglob("flow.yaml")):
        document = yaml.safe_load(flow.read_text()) or {}
        value = document.get("value", {})
        modules = list(value.get("modules", []))
        if value.get("failure_module"):
            modules.append(value["failure_module"])
        for module in modules:
            step = module.get("value", {})
            content, lock_ref = step.get("content"), step.get("lock")
            if isinstance(content, str) and isinstance(lock_ref, str) and lock_ref.startswith("!inline "):
                pairs.append(
                    (
                        flow.parent / content.removeprefix("!inline ").strip(),
                        flow.parent / lock_ref.removeprefix("!inline ").strip(),
                    )
                )
    return pairs


def generate(root: Path = WORKSPACE) -> list[Generated]:
    outputs = []
    for script in scripts(root):
        outputs.append(Generated(script.with_suffix(".script.yaml"), metadata(script, root)))
        outputs.append(Generated(script.with_suffix(".script.lock"), lock(script, root)))
    for script, lock_file in inline_locks(root):
        outputs.append(Generated(lock_file, lock(script, root)))
    return outputs


def stale(root: Path = WORKSPACE) -> list[Path]:
    """Files whose committed content differs from what the code generates."""
    return [
        item.path
        for item in generate(root)
        if not item.path.exists() or item.path.read_text() != item.content
    ]


def write(root: Path = WORKSPACE) -> list[Path]:
    changed = stale(root)
    contents = {item.path: item.content for item in generate(root)}
    for path in changed:
        path.write_text(contents[path])
    return changed
