-- Chatbots (the assistant's behaviour) and the WhatsApp numbers connected to them.

CREATE TABLE chatbots (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    system_prompt         text NOT NULL DEFAULT 'You are a friendly, concise assistant for this business.',
    llm_provider          text NOT NULL DEFAULT 'offline' CHECK (llm_provider IN ('offline', 'openai', 'gemini')),
    llm_model             text,                       -- NULL: the provider's configured default
    temperature           numeric(3, 2) NOT NULL DEFAULT 0.30 CHECK (temperature BETWEEN 0 AND 2),
    max_output_tokens     integer NOT NULL DEFAULT 800 CHECK (max_output_tokens BETWEEN 16 AND 16384),
    embedding_model       text NOT NULL DEFAULT 'offline',
    text_search_config    regconfig NOT NULL DEFAULT 'simple',
    retrieval_top_k       integer NOT NULL DEFAULT 5 CHECK (retrieval_top_k BETWEEN 1 AND 50),
    retrieval_min_score   real NOT NULL DEFAULT 0 CHECK (retrieval_min_score >= 0),
    history_turns         integer NOT NULL DEFAULT 10 CHECK (history_turns BETWEEN 0 AND 100),
    debounce_ms           integer NOT NULL DEFAULT 1500 CHECK (debounce_ms BETWEEN 0 AND 30000),
    rate_limit_per_minute integer NOT NULL DEFAULT 20 CHECK (rate_limit_per_minute BETWEEN 1 AND 10000),
    fallback_message      text NOT NULL DEFAULT
        'Sorry, something went wrong on our side. Please try again in a moment.',
    settings              jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz,
    UNIQUE (organization_id, id)
);
CREATE INDEX chatbots_organization_idx ON chatbots (organization_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE TRIGGER chatbots_updated_at BEFORE UPDATE ON chatbots FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- A WhatsApp business number. Secrets are encrypted at rest (Fernet, keys from ENCRYPTION_KEYS) and
-- only a hint (last 4 characters) is ever shown. app_secret_encrypted NULL: the number is on the
-- platform's Meta app (WHATSAPP_APP_SECRET); set: the tenant's own app, on /webhook/whatsapp/{id}.
CREATE TABLE whatsapp_channels (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id         uuid NOT NULL,
    chatbot_id              uuid NOT NULL,
    phone_number_id         text NOT NULL CHECK (phone_number_id ~ '^[0-9]{1,32}$'),
    waba_id                 text CHECK (waba_id ~ '^[0-9]{1,32}$'),
    display_phone_number    text,
    access_token_encrypted  text NOT NULL,
    access_token_hint       text NOT NULL,
    app_secret_encrypted    text,
    app_secret_hint         text,
    verify_token_encrypted  text,
    verify_token_hint       text,
    -- Messages per second this number may send (Meta's default is ~80).
    send_rate_per_second    integer NOT NULL DEFAULT 80 CHECK (send_rate_per_second BETWEEN 1 AND 1000),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    disconnected_at         timestamptz,
    UNIQUE (organization_id, id),
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE
);
-- Webhook routing: one live channel per business number.
CREATE UNIQUE INDEX whatsapp_channels_phone_number_key ON whatsapp_channels (phone_number_id)
    WHERE disconnected_at IS NULL;
CREATE INDEX whatsapp_channels_chatbot_idx ON whatsapp_channels (organization_id, chatbot_id);
CREATE TRIGGER whatsapp_channels_updated_at BEFORE UPDATE ON whatsapp_channels
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
