"""`wmill lint` (windmill-cli pinned in windmill_scripts/package.json) over the Windmill workspace.

CI runs `cd windmill_scripts && npm ci --no-audit --no-fund` before pytest; without that
(no node, or no node_modules) these tests are skipped, never silently green.

What lint checks (CLI 1.819.0): every `flow.yaml` against the OpenFlow schema, `*.schedule.yaml`
and `*.<kind>_trigger.yaml` against their schemas, that each `.script.yaml`/`.script.lock` has a
script file next to it, and with `--locks-required` that scripts and inline flow steps that need a
lock have a non-empty one. It does not compare a script's `schema` with its `main` signature.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = REPO_ROOT / "windmill_scripts"
WMILL_BIN = WORKSPACE / "node_modules" / ".bin" / "wmill"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BAD_WORKSPACE = FIXTURES / "bad_workspace"
GOOD_WORKSPACE = FIXTURES / "good_workspace"

# Lint is local file parsing (well under a second); the limit only stops a hung process.
LINT_TIMEOUT_S = 120

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = [
    pytest.mark.skipif(
        shutil.which("node") is None,
        reason="node is not installed; the wmill CLI (npm windmill-cli) needs Node.js",
    ),
    pytest.mark.skipif(
        not WMILL_BIN.exists(),
        reason=(
            "windmill_scripts/node_modules is missing; run "
            "`cd windmill_scripts && npm ci --no-audit --no-fund` first"
        ),
    ),
]


@dataclass(frozen=True)
class LintRun:
    """Outcome of one `wmill lint` invocation (ANSI colours stripped)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Stdout and stderr together (the CLI logs its report to stdout)."""
        return self.stdout + self.stderr

    def report(self) -> dict[str, Any]:
        """The `--json` report: the JSON object printed last on stdout (after any log lines)."""
        match = re.search(r"^\{", self.stdout, flags=re.MULTILINE)
        assert match is not None, f"no JSON report in:\n{self.output}"
        data = json.loads(self.stdout[match.start() :])
        assert isinstance(data, dict)
        return data


def run_lint(cwd: Path, *args: str) -> LintRun:
    """Run the pinned `wmill lint` from `cwd` non-interactively (CI=true, no stdin)."""
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run(
        [str(WMILL_BIN), "lint", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=LINT_TIMEOUT_S,
        check=False,
    )
    return LintRun(
        returncode=proc.returncode,
        stdout=_ANSI.sub("", proc.stdout),
        stderr=_ANSI.sub("", proc.stderr),
    )


def test_workspace_lint_passes() -> None:
    """The exact CI command (`wmill lint` from windmill_scripts/) exits 0."""
    result = run_lint(WORKSPACE)
    assert result.returncode == 0, result.output
    assert "Lint passed" in result.output, result.output
    assert "No wmill.yaml found" not in result.output, result.output


def test_workspace_lint_sees_the_workspace_and_its_locks() -> None:
    """Lint really scanned `f/` (not a 0-file false green) and every script has its lock."""
    result = run_lint(WORKSPACE, "--json", "--locks-required")
    assert result.returncode == 0, result.output
    report = result.report()
    assert report["success"] is True, report
    assert report["issues"] == [], report
    # At least ping_database.py + .script.yaml + .script.lock.
    assert report["scannedFiles"] >= 3, report
    assert report["validFiles"] == report["validatedFiles"], report


def test_bad_flow_fails_lint_and_names_the_files() -> None:
    """An invalid OpenFlow document makes lint exit non-zero and name the offending file."""
    result = run_lint(BAD_WORKSPACE)
    assert result.returncode != 0, result.output
    assert "Lint failed" in result.output, result.output
    assert "f/bad/broken__flow/flow.yaml" in result.output, result.output
    assert "f/bad/no_modules__flow/flow.yaml" in result.output, result.output
    assert "missing required property 'modules'" in result.output, result.output


def test_bad_flow_json_report() -> None:
    """The JSON report lists exactly the two broken flows as invalid."""
    result = run_lint(BAD_WORKSPACE, "--json")
    assert result.returncode != 0, result.output
    report = result.report()
    assert report["success"] is False, report
    invalid = {issue["path"]: issue for issue in report["issues"]}
    assert set(invalid) == {
        "f/bad/broken__flow/flow.yaml",
        "f/bad/no_modules__flow/flow.yaml",
    }, report
    assert all(issue["target"] == "flow" for issue in invalid.values()), report
    assert any(
        "/value/modules/0/value" in error for error in invalid["f/bad/broken__flow/flow.yaml"]["errors"]
    ), report


def test_good_flow_passes_lint() -> None:
    """A minimal valid flow (one inline python3 step with its lock) passes, locks required."""
    result = run_lint(GOOD_WORKSPACE, "--json", "--locks-required")
    assert result.returncode == 0, result.output
    report = result.report()
    assert report["success"] is True, report
    assert report["validatedFiles"] == 1, report
    assert report["validFiles"] == 1, report
