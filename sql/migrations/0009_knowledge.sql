-- Knowledge, second part: what ingestion, retrieval and re-embedding need beyond 0005.
--
-- * knowledge_sources.last_run: counts and per-page warnings of the latest ingestion (documents,
--   chunks, embedded, deleted, skipped pages with their reason), for the API and the CLI.
-- * knowledge_chunks.next_embedding / next_embedding_model: `chatmill reembed` fills these in the
--   background while retrieval keeps using `embedding`, then swaps both in one transaction.
-- * knowledge_chunk_stats: chunks per (chatbot, model), refreshed after every ingestion, so the
--   retriever chooses an exact scan or the HNSW index without counting rows on each query.
-- * knowledge_reembeds: the state of a chatbot's move to another embedding model.
-- The partial HNSW index of each embedding model is created by code when the model is registered
-- (f/chatmill/lib/embeddings.py: register_model), not here.

ALTER TABLE knowledge_sources
    ADD COLUMN last_run jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(last_run) = 'object');

ALTER TABLE knowledge_chunks
    ADD COLUMN next_embedding vector,
    ADD COLUMN next_embedding_model text REFERENCES embedding_models (name),
    ADD CONSTRAINT knowledge_chunks_next_embedding_check
        CHECK ((next_embedding IS NULL) = (next_embedding_model IS NULL));

CREATE TABLE knowledge_chunk_stats (
    organization_id uuid NOT NULL,
    chatbot_id      uuid NOT NULL,
    embedding_model text NOT NULL REFERENCES embedding_models (name),
    chunk_count     bigint NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chatbot_id, embedding_model),
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_chunk_stats_model_idx ON knowledge_chunk_stats (embedding_model);

CREATE TABLE knowledge_reembeds (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    chatbot_id      uuid NOT NULL,
    from_model      text NOT NULL,
    to_model        text NOT NULL REFERENCES embedding_models (name),
    status          text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    progress_done   integer NOT NULL DEFAULT 0,
    progress_total  integer NOT NULL DEFAULT 0,
    error           text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (organization_id, id),
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE
);
-- One move at a time per chatbot.
CREATE UNIQUE INDEX knowledge_reembeds_running_key ON knowledge_reembeds (chatbot_id) WHERE status = 'running';
