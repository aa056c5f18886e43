"""Loading flow.yaml files: the supported subset loads; anything else is refused at load time,
naming the file, the module id and the construct."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from chatmill.runner.flowfile import Expr, FlowLoadError, Static, load_flow, load_workspace
from chatmill.runner.schedules import load_schedules
from chatmill.runner.service import DEFAULT_ROOT

FIXTURES = Path(__file__).parent / "fixtures"
WORKSPACE = FIXTURES / "workspace"


def test_the_sample_workspace_loads_with_every_construct() -> None:
    flows = load_workspace(WORKSPACE)
    assert sorted(flows) == ["f/rt/crash", "f/rt/sample", "f/rt/work"]
    sample = flows["f/rt/sample"]
    assert [m.id for m in sample.modules] == ["prepare", "flaky", "slow", "echo"]
    prepare, flaky, slow, echo = sample.modules
    assert prepare.kind == "rawscript"
    assert prepare.module_name == "f.rt.sample__flow.prepare"
    assert isinstance(prepare.input_transforms["label"], Static)
    assert isinstance(prepare.input_transforms["name"], Expr)
    assert prepare.stop_after_if is not None
    assert prepare.stop_after_if.skip_if_stopped
    assert flaky.retry is not None
    assert flaky.retry.attempts == 2
    assert slow.timeout == 1.0
    assert echo.kind == "script"
    assert echo.file == WORKSPACE / "f/rt/echo.py"
    assert sample.failure_module is not None
    assert sample.failure_module.id == "failure"


def test_every_committed_flow_and_schedule_loads() -> None:
    flows = load_workspace(DEFAULT_ROOT)
    for flow in flows.values():
        assert flow.modules, flow.path
    load_schedules(DEFAULT_ROOT)


def test_the_deliberately_bad_fixture_is_refused_with_file_module_and_construct() -> None:
    with pytest.raises(FlowLoadError) as caught:
        load_workspace(FIXTURES / "bad_workspace")
    error = caught.value
    assert error.file.endswith("f/bad/branchy__flow/flow.yaml")
    assert error.module_id == "choose"
    assert "branchone" in error.construct
    assert "branchy__flow/flow.yaml, module 'choose': unsupported module type 'branchone'" in str(error)


def _write(tmp_path: Path, flow: str, files: dict[str, str] | None = None) -> Path:
    folder = tmp_path / "f" / "t" / "x__flow"
    folder.mkdir(parents=True)
    (folder / "flow.yaml").write_text(dedent(flow))
    for name, text in (
        files or {"step.py": "def main(a: int = 0, b: int = 0) -> int:\n    return a\n"}
    ).items():
        (folder / name).write_text(text)
    return folder / "flow.yaml"


def _module(extra: str = "", value_extra: str = "", transforms: str = "") -> str:
    return f"""
    summary: t
    value:
      modules:
        - id: step_one
          value:
            type: rawscript
            language: python3
            content: '!inline step.py'
            input_transforms: {{{transforms}}}
            {value_extra}
          {extra}
    """


@pytest.mark.parametrize(
    ("flow", "construct"),
    [
        (_module(extra="skip_if: {expr: 'true'}"), "module.skip_if"),
        (_module(extra="sleep: {type: static, value: 1}"), "module.sleep"),
        (_module(extra="suspend: {required_events: 1}"), "module.suspend"),
        (_module(extra="mock: {enabled: true}"), "module.mock"),
        (_module(value_extra="tag: gpu"), "value.tag"),
        (_module(transforms="a: {type: javascript, expr: 'flow_input.x + 1'}"), "unsupported javascript"),
        (
            _module(transforms="a: {type: javascript, expr: 'results.later.x'}"),
            "does not name an earlier module",
        ),
        (
            _module(transforms="a: {type: javascript, expr: 'previous_result'}"),
            "previous_result in the first module",
        ),
        (_module(transforms="a: {type: template, value: 'x'}"), "unsupported transform type 'template'"),
        (_module(transforms="zzz: {type: static, value: 1}"), "not parameters of step.py main()"),
        (_module(extra="retry: {linear: {attempts: 2}}"), "retry.linear"),
        (_module(extra="retry: {constant: {attempts: -1}}"), "non-negative"),
        (_module(extra="timeout: 0"), "timeout must be a positive"),
        (
            _module(extra="stop_after_if: {expr: 'result.x.map(y => y)'}"),
            "stop_after_if: unsupported expression",
        ),
        (_module().replace("type: rawscript", "type: forloopflow"), "unsupported module type 'forloopflow'"),
        (_module().replace("language: python3", "language: deno"), "unsupported language 'deno'"),
        (_module().replace("'!inline step.py'", "'def main(): pass'"), "'!inline <file>.py'"),
        (
            _module().replace("'!inline step.py'", "'!inline ../step.py'"),
            "must be a .py file in the flow folder",
        ),
    ],
)
def test_unsupported_constructs_are_refused(tmp_path: Path, flow: str, construct: str) -> None:
    file = _write(tmp_path, flow)
    with pytest.raises(FlowLoadError) as caught:
        load_flow(file, tmp_path)
    assert caught.value.module_id == "step_one"
    assert construct in caught.value.construct
    assert str(file) in str(caught.value)


def test_flow_level_unknowns_and_missing_arguments_are_refused(tmp_path: Path) -> None:
    file = _write(tmp_path, _module().replace("summary: t", "summary: t\n    concurrency_limit: 3"))
    with pytest.raises(FlowLoadError, match=r"flow\.concurrency_limit"):
        load_flow(file, tmp_path)
    file = _write(
        tmp_path / "two", _module(), {"step.py": "def main(required: str) -> str:\n    return required\n"}
    )
    with pytest.raises(FlowLoadError, match=r"requires \['required'\]"):
        load_flow(file, tmp_path / "two")
    file = _write(tmp_path / "three", _module().replace("same_worker", "x"), {"step.py": "x = 1\n"})
    with pytest.raises(FlowLoadError, match="no top-level main"):
        load_flow(file, tmp_path / "three")


def test_a_script_module_must_exist_with_its_metadata(tmp_path: Path) -> None:
    flow = _module().replace(
        "type: rawscript\n            language: python3\n            content: '!inline step.py'",
        "type: script\n            path: f/t/missing",
    )
    file = _write(tmp_path, flow)
    with pytest.raises(FlowLoadError, match="script f/t/missing not found"):
        load_flow(file, tmp_path)
