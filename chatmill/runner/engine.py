"""Execute one flow run: modules in order, with retries, timeouts, stop_after_if, failure_module.

Scripts are imported with the workspace root on ``sys.path`` (``f.chatmill.x``; a module already
imported under that name from the same file is reused) and ``main(**kwargs)`` runs in a **fresh
daemon thread per attempt** (an ``async def main`` runs in that thread with ``asyncio.run``).

Timeouts: the runner stops waiting after ``timeout`` seconds, records the attempt as failed with
``TimeoutError`` and goes on (retry, failure module). Python cannot kill a thread, so the abandoned
thread keeps running until ``main`` returns; its result is discarded. Because each attempt has its
own daemon thread, a stuck script never blocks a worker or other runs, and it does not keep the
process alive at exit. A retried step can therefore overlap with its timed-out predecessor: steps
must be idempotent (the flows are designed that way). ``abandoned_threads()`` counts them.

Arguments: input transforms are evaluated in declaration order; a javascript path that evaluates to
``undefined`` leaves the parameter out (its default applies). ``$res:`` / ``$var:`` strings in
static values are resolved by :class:`~chatmill.runner.references.References` just before the call;
the recorded step inputs keep the unresolved strings, so no secret is ever stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import importlib
import importlib.util
import inspect
import json
import logging
import random
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from chatmill.runner import expressions
from chatmill.runner.expressions import UNDEFINED, ExpressionError
from chatmill.runner.flowfile import Expr, Flow, Module, Static
from chatmill.runner.references import ReferenceNotFound

_log = logging.getLogger(__name__)
_abandoned = 0
_abandoned_lock = threading.Lock()


def abandoned_threads() -> int:
    """Step threads still running after their timeout (since process start)."""
    return _abandoned


class StepRecorder(Protocol):
    async def step_started(
        self, step_id: str, position: int, attempt: int, inputs: dict[str, Any]
    ) -> None: ...

    async def step_finished(
        self, step_id: str, attempt: int, status: str, result: Any, error: dict[str, Any] | None
    ) -> None: ...


class Resolver(Protocol):
    def resolve(self, value: Any) -> Any: ...


@dataclass
class Outcome:
    status: str  # success | failure
    result: Any = None
    error: dict[str, Any] | None = None
    stopped_at: str | None = None
    skipped: bool = False
    results: dict[str, Any] = field(default_factory=dict)


class StepFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error


class ScriptLoader:
    """Imports workspace scripts by dotted name, falling back to the file for other roots (tests)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._lock = threading.Lock()
        root_text = str(self.root)
        if root_text not in sys.path:
            sys.path.insert(0, root_text)

    def main(self, module: Module) -> Callable[..., Any]:
        loaded = self._load(module.module_name, module.file.resolve())
        function = getattr(loaded, "main", None)
        if not callable(function):
            raise TypeError(f"{module.file} has no callable main()")
        return function  # type: ignore[no-any-return]

    def _load(self, name: str, file: Path) -> ModuleType:
        with self._lock:
            existing = sys.modules.get(name)
            if (
                existing is not None
                and getattr(existing, "__file__", None)
                and Path(existing.__file__ or "").resolve() == file
            ):
                return existing
            if existing is None:
                with contextlib.suppress(ImportError):
                    imported = importlib.import_module(name)
                    if Path(imported.__file__ or "").resolve() == file:
                        return imported
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {file}")
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[name] = loaded
            try:
                spec.loader.exec_module(loaded)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return loaded


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (datetimes, UUIDs, decimals become strings); TypeError otherwise."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"a step result must be JSON-serialisable; got {type(value).__name__}")


def error_of(exc: BaseException, step_id: str) -> dict[str, Any]:
    """The error object a failure module receives (``message``, ``name``, ``step_id``) + ``stack``."""
    stack = "".join(traceback.format_exception(exc)[-6:])
    return {
        "message": str(exc) or type(exc).__name__,
        "name": type(exc).__name__,
        "step_id": step_id,
        "stack": stack[-4000:],
    }


async def call_in_thread(
    function: Callable[..., Any], kwargs: dict[str, Any], limit: float | None, name: str
) -> Any:
    """Run ``function(**kwargs)`` in a new daemon thread; give up waiting after ``limit`` s."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    finished = threading.Event()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        try:
            if inspect.iscoroutinefunction(function):
                result = asyncio.run(function(**kwargs))
            else:
                result = function(**kwargs)
        except BaseException as exc:
            outcome: tuple[Callable[[Any], None], Any] = (future.set_exception, exc)
        else:
            outcome = (future.set_result, result)
        finished.set()
        with contextlib.suppress(RuntimeError):  # the loop may be closed by now
            loop.call_soon_threadsafe(deliver, *outcome)

    thread = threading.Thread(target=target, name=f"chatmill-step-{name}", daemon=True)
    thread.start()
    try:
        return await asyncio.wait_for(asyncio.shield(future), limit)
    except (TimeoutError, asyncio.CancelledError):
        if not finished.is_set():
            global _abandoned
            with _abandoned_lock:
                _abandoned += 1
            _log.warning("step %s abandoned in its thread (timeout or cancel); it keeps running", name)
        raise


Sleep = Callable[[float], Awaitable[None]]


class FlowExecutor:
    """Runs flows from one workspace root."""

    def __init__(self, root: Path, resolver: Resolver, *, sleep: Sleep = asyncio.sleep) -> None:
        self.loader = ScriptLoader(root)
        self.resolver = resolver
        self.sleep = sleep

    async def run(self, flow: Flow, args: dict[str, Any], recorder: StepRecorder) -> Outcome:
        results: dict[str, Any] = {}
        previous: Any = UNDEFINED
        position = 0
        for position, module in enumerate(flow.modules):
            context = {"flow_input": args, "results": results, "previous_result": previous}
            try:
                result = await self.run_module(module, position, context, recorder)
            except StepFailed as failed:
                return await self._fail(flow, args, results, failed.error, position + 1, recorder)
            results[module.id] = result
            previous = result
            if module.stop_after_if is not None:
                stop_context = {**context, "results": results, "result": result}
                try:
                    stop = expressions.truthy(expressions.evaluate(module.stop_after_if.node, stop_context))
                except ExpressionError as exc:
                    error = error_of(exc, module.id)
                    error["message"] = f"stop_after_if {module.stop_after_if.source!r}: {exc}"
                    return await self._fail(flow, args, results, error, position + 1, recorder)
                if stop:
                    return Outcome(
                        "success",
                        result=result,
                        stopped_at=module.id,
                        skipped=module.stop_after_if.skip_if_stopped,
                        results=results,
                    )
        return Outcome("success", result=previous if previous is not UNDEFINED else None, results=results)

    async def _fail(
        self,
        flow: Flow,
        args: dict[str, Any],
        results: dict[str, Any],
        error: dict[str, Any],
        position: int,
        recorder: StepRecorder,
    ) -> Outcome:
        public = {key: error[key] for key in ("message", "name", "step_id")}
        if flow.failure_module is None:
            return Outcome("failure", error=error, results=results)
        context = {"flow_input": args, "results": results, "previous_result": public, "error": public}
        try:
            handled = await self.run_module(flow.failure_module, len(flow.modules), context, recorder)
        except StepFailed as failed:
            return Outcome(
                "failure", error={**error, "failure_module_error": failed.error["message"]}, results=results
            )
        return Outcome("failure", result=handled, error=error, results=results)

    async def run_module(
        self, module: Module, position: int, context: dict[str, Any], recorder: StepRecorder
    ) -> Any:
        """Run one module with its retries; return its JSON result or raise :class:`StepFailed`."""
        attempts = 1 + (module.retry.attempts if module.retry else 0)
        error: dict[str, Any] = {}
        for attempt in range(1, attempts + 1):
            if attempt > 1 and module.retry is not None:
                await self.sleep(module.retry.delay(attempt - 1, random.random()))  # noqa: S311
            try:
                recorded, kwargs = self._arguments(module, context)
            except (ExpressionError, ReferenceNotFound) as exc:
                await recorder.step_started(module.id, position, attempt, {})
                error = error_of(exc, module.id)
                await recorder.step_finished(module.id, attempt, "failure", None, error)
                raise StepFailed(error) from exc  # arguments will not get better on retry
            await recorder.step_started(module.id, position, attempt, recorded)
            started = time.monotonic()
            try:
                function = self.loader.main(module)
                raw = await call_in_thread(function, kwargs, module.timeout, module.id)
                result = json_safe(raw)
            except TimeoutError:
                timeout = TimeoutError(f"step {module.id} timed out after {module.timeout:g} s")
                error = error_of(timeout, module.id)
                error["stack"] = ""
            except Exception as exc:
                error = error_of(exc, module.id)
            else:
                await recorder.step_finished(module.id, attempt, "success", result, None)
                return result
            error["duration_ms"] = round((time.monotonic() - started) * 1000)
            await recorder.step_finished(module.id, attempt, "failure", None, error)
        raise StepFailed(error)

    def _arguments(self, module: Module, context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(inputs as recorded — references unresolved —, keyword arguments for main)."""
        recorded: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        for name, transform in module.input_transforms.items():
            if isinstance(transform, Static):
                recorded[name] = transform.value
                kwargs[name] = self.resolver.resolve(transform.value)
            elif isinstance(transform, Expr):
                value = expressions.evaluate(transform.node, context)
                if value is UNDEFINED:
                    continue
                recorded[name] = value
                kwargs[name] = value
        return recorded, kwargs
