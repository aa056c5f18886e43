"""The local flow runner: executes the workspace's Windmill flows in-process (embedded mode).

- :mod:`~chatmill.runner.flowfile` loads ``flow.yaml`` files and refuses unsupported constructs;
- :mod:`~chatmill.runner.expressions` is the safe JavaScript-subset evaluator;
- :mod:`~chatmill.runner.engine` runs a flow's modules (threads, retries, timeouts);
- :mod:`~chatmill.runner.references` resolves ``$res:`` / ``$var:`` from Settings;
- :mod:`~chatmill.runner.queue` and :mod:`~chatmill.runner.service` are the PostgreSQL queue and the
  worker pool (``Runner``, ``run_runner``); :mod:`~chatmill.runner.schedules` the schedule files;
- :mod:`~chatmill.runner.cli` is ``chatmill runs``.
"""
