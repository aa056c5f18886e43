-- Local runner, part two: what the executing runner records beyond 0006.
-- - runs: which step stopped the flow early (stop_after_if) and whether it counts as skipped;
-- - steps: one row per (run attempt, step, retry attempt) — a run re-queued after a crashed runner
--   starts a new run attempt and keeps the old rows — plus the step's inputs as written in the flow
--   (``$res:`` / ``$var:`` references unresolved: no secret is ever stored);
-- - every run that becomes queued wakes the runners (NOTIFY chatmill_runs), whoever queued it.

ALTER TABLE runner_runs
    ADD COLUMN stopped_at_step text,
    ADD COLUMN skipped boolean NOT NULL DEFAULT false;

ALTER TABLE runner_steps
    ADD COLUMN run_attempt integer NOT NULL DEFAULT 1,
    ADD COLUMN inputs jsonb;
ALTER TABLE runner_steps DROP CONSTRAINT runner_steps_pkey;
ALTER TABLE runner_steps ADD PRIMARY KEY (run_id, run_attempt, step_id, attempt);

CREATE FUNCTION runner_runs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chatmill_runs', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER runner_runs_queued
    AFTER INSERT OR UPDATE OF status ON runner_runs
    FOR EACH ROW WHEN (NEW.status = 'queued')
    EXECUTE FUNCTION runner_runs_notify();
