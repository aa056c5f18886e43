-- The local runner's record of flow runs and their steps: the embedded stand-in for Windmill's job
-- history (`chatmill runs`). Runs are platform rows; organization_id is filled when the flow input
-- names a tenant resource, for filtering.

CREATE TABLE runner_runs (
    id              uuid PRIMARY KEY,                 -- the job id the dispatcher chose
    flow_path       text NOT NULL,                    -- e.g. f/chatmill/handle_message
    organization_id uuid REFERENCES organizations (id) ON DELETE SET NULL,
    args            jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'success', 'failure', 'canceled')),
    worker          text,
    attempt         integer NOT NULL DEFAULT 0,       -- times a worker picked it up (crash recovery)
    scheduled_for   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    result          jsonb,
    error           jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runner_runs_queue_idx ON runner_runs (scheduled_for) WHERE status = 'queued';
CREATE INDEX runner_runs_running_idx ON runner_runs (heartbeat_at) WHERE status = 'running';
CREATE INDEX runner_runs_recent_idx ON runner_runs (created_at DESC);
CREATE INDEX runner_runs_failed_idx ON runner_runs (created_at DESC) WHERE status = 'failure';

CREATE TABLE runner_steps (
    run_id      uuid NOT NULL REFERENCES runner_runs (id) ON DELETE CASCADE,
    step_id     text NOT NULL,
    attempt     integer NOT NULL DEFAULT 1,
    position    integer NOT NULL,
    status      text NOT NULL CHECK (status IN ('running', 'success', 'failure', 'skipped', 'stopped')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    result      jsonb,
    error       jsonb,
    PRIMARY KEY (run_id, step_id, attempt)
);

-- Schedules the runner honours (the same schedule files Windmill reads from the workspace).
CREATE TABLE runner_schedules (
    path        text PRIMARY KEY,
    last_run_at timestamptz,
    next_run_at timestamptz
);
