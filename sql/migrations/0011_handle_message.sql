-- handle_message: an outbox row can be dispatched again (a new generation, hence a new job id) when
-- the run holding its conversation lets go and finds the message still unanswered.
ALTER TABLE inbound_outbox ADD COLUMN generation integer NOT NULL DEFAULT 0 CHECK (generation >= 0);

-- Stuck-message sweep: unanswered messages whose run ended without answering them.
CREATE INDEX inbound_outbox_open_idx ON inbound_outbox (dispatched_at)
    WHERE completed_at IS NULL AND failed_at IS NULL AND dispatched_at IS NOT NULL;
