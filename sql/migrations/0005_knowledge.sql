-- Knowledge: sources (an uploaded file, a URL, a crawl), the documents fetched from them, and the
-- chunks retrieval searches. Vectors live in an untyped `vector` column tagged with the model that
-- produced them; each model gets one partial HNSW expression index
-- ((embedding::vector(D)) WHERE embedding_model = '…'), created when the model is registered, so
-- the embedder can change without a schema change.

CREATE TABLE embedding_models (
    name        text PRIMARY KEY,                 -- e.g. 'offline', 'openai:text-embedding-3-small'
    provider    text NOT NULL,
    dimensions  integer NOT NULL CHECK (dimensions BETWEEN 1 AND 4000),  -- HNSW on vector: <= 2000
    index_name  text,                             -- the partial HNSW index, once created
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE knowledge_sources (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    chatbot_id      uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('file', 'url', 'crawl')),
    name            text NOT NULL,
    url             text,                          -- url / crawl start
    file_name       text,
    content_type    text,
    file_content    bytea,                         -- uploaded file (bounded by the upload limit)
    file_sha256     bytea,
    options         jsonb NOT NULL DEFAULT '{}'::jsonb,  -- crawl limits, include/exclude patterns
    status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    progress_done   integer NOT NULL DEFAULT 0,
    progress_total  integer NOT NULL DEFAULT 0,
    error           text,
    document_count  integer NOT NULL DEFAULT 0,
    chunk_count     integer NOT NULL DEFAULT 0,
    job_id          uuid,
    sync_interval   interval,                      -- NULL: no scheduled re-sync
    last_synced_at  timestamptz,
    next_sync_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CHECK ((kind = 'file') = (file_content IS NOT NULL)),
    CHECK (kind = 'file' OR url IS NOT NULL),
    UNIQUE (organization_id, id),
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_sources_chatbot_idx ON knowledge_sources (organization_id, chatbot_id, created_at DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX knowledge_sources_resync_idx ON knowledge_sources (next_sync_at)
    WHERE deleted_at IS NULL AND sync_interval IS NOT NULL;
CREATE TRIGGER knowledge_sources_updated_at BEFORE UPDATE ON knowledge_sources
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE knowledge_documents (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    chatbot_id      uuid NOT NULL,
    source_id       uuid NOT NULL,
    uri             text NOT NULL,                 -- file name or page URL
    title           text,
    mime_type       text,
    content_hash    bytea NOT NULL,
    byte_size       integer NOT NULL DEFAULT 0,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    fetched_at      timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id),
    UNIQUE (source_id, uri),
    FOREIGN KEY (organization_id, source_id) REFERENCES knowledge_sources (organization_id, id) ON DELETE CASCADE
);
CREATE TRIGGER knowledge_documents_updated_at BEFORE UPDATE ON knowledge_documents
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE knowledge_chunks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid NOT NULL,
    chatbot_id      uuid NOT NULL,
    source_id       uuid NOT NULL,
    document_id     uuid NOT NULL,
    chunk_index     integer NOT NULL CHECK (chunk_index >= 0),
    content         text NOT NULL,
    content_hash    bytea NOT NULL,
    token_count     integer NOT NULL DEFAULT 0,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,   -- title, url, page, heading
    embedding       vector,                               -- untyped: dimensions follow embedding_model
    embedding_model text REFERENCES embedding_models (name),
    ts_config       regconfig NOT NULL DEFAULT 'simple',  -- the chatbot's text_search_config
    tsv             tsvector GENERATED ALWAYS AS (to_tsvector(ts_config, content)) STORED,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((embedding IS NULL) = (embedding_model IS NULL)),
    UNIQUE (document_id, content_hash),
    FOREIGN KEY (organization_id, document_id)
        REFERENCES knowledge_documents (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_chunks_chatbot_idx ON knowledge_chunks (chatbot_id, embedding_model);
CREATE INDEX knowledge_chunks_document_idx ON knowledge_chunks (document_id, chunk_index);
CREATE INDEX knowledge_chunks_tsv_idx ON knowledge_chunks USING gin (tsv);
