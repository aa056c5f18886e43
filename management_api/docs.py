"""``/api/docs``: the OpenAPI document rendered server-side as one self-contained HTML page.

No JavaScript and nothing fetched from anywhere (a CSP of ``default-src 'none'`` enforces it), so
it works offline and behind strict networks. Operations are grouped by tag with their roles,
parameters, request example and responses; schemas are listed at the end.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:0 auto;padding:1rem 2rem;color:#1b1f24}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-top:1rem}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
summary{cursor:pointer}code,pre{font:13px/1.4 ui-monospace,monospace}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;border-radius:4px}
pre.d{background:none;font:14px/1.5 system-ui,sans-serif;white-space:pre-wrap;padding:0}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#0a7d32}.post{color:#0550ae}.put,.patch{color:#8a4b00}.delete{color:#b3261e}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
"""


def _json(value: Any) -> str:
    return escape(json.dumps(value, indent=2, ensure_ascii=False))


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else json.dumps(schema)


def _parameters(parameters: list[dict[str, Any]]) -> str:
    if not parameters:
        return ""
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
        f"<td>{'yes' if p.get('required') else 'no'}</td><td><code>{_json(p['schema'])}</code></td>"
        f"<td>{escape(p.get('description', ''))}</td></tr>"
        for p in parameters
    )
    return f"<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th></th></tr>{rows}</table>"


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    parts = [
        f"<details><summary><span class='m {method}'>{method}</span> <code>{escape(path)}</code> "
        f"— {escape(op.get('summary', ''))}</summary>",
        f"<p>{escape(op.get('description', ''))}</p>",
        _parameters(op.get("parameters", [])),
    ]
    body = op.get("requestBody")
    if body:
        for media, content in body["content"].items():
            parts.append(
                f"<p>Request body <code>{escape(media)}</code>: <a href='#schema-{escape(_schema_name(content['schema']))}'>"
                f"{escape(_schema_name(content['schema']))}</a></p>"
            )
            if "example" in content:
                parts.append(f"<pre>{_json(content['example'])}</pre>")
    items = []
    for status, response in op.get("responses", {}).items():
        if "$ref" in response:
            items.append(f"<li><code>{escape(status)}</code> error (ErrorResponse)</li>")
            continue
        content = response.get("content", {})
        shape = ", ".join(
            f"{escape(media)} {escape(_schema_name(c['schema']))}" for media, c in content.items()
        )
        items.append(
            f"<li><code>{escape(status)}</code> {escape(response.get('description', ''))} {shape}</li>"
        )
    parts.append(f"<p>Responses:</p><ul>{''.join(items)}</ul></details>")
    return "".join(parts)


def render_docs(spec: dict[str, Any]) -> str:
    by_tag: dict[str, list[str]] = {}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append(_operation(path, method, op))
    descriptions = {tag["name"]: tag.get("description", "") for tag in spec.get("tags", [])}
    sections = "".join(
        f"<h2>{escape(tag)}</h2><pre class='d'>{escape(descriptions.get(tag, ''))}</pre>{''.join(ops)}"
        for tag, ops in by_tag.items()
    )
    schemas = "".join(
        f"<details id='schema-{escape(name)}'><summary><code>{escape(name)}</code></summary><pre>{_json(schema)}</pre></details>"
        for name, schema in sorted(spec["components"]["schemas"].items())
    )
    info = spec["info"]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(info['title'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])}</h1><p>version {escape(info['version'])} · OpenAPI {escape(spec['openapi'])} · "
        "<a href='/api/openapi.json'>openapi.json</a></p>"
        f"<p>{escape(info.get('description', ''))}</p>{sections}<h2>Schemas</h2>{schemas}</body></html>"
    )
