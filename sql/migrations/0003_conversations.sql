-- Customers (contacts), conversations, messages, the inbound outbox and early statuses.

-- A WhatsApp user as seen by one business number. Meta identifies users by phone (wa_id) and, since
-- 2026, by a business-scoped user_id; users with a username may arrive without a phone number.
-- The ingress keys contacts on (channel, user_id if present else wa_id) and stores both.
CREATE TABLE contacts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    channel_id      uuid NOT NULL,
    wa_id           text,
    user_id         text,
    profile_name    text,
    username        text,
    opted_out_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz,
    CHECK (wa_id IS NOT NULL OR user_id IS NOT NULL),
    UNIQUE (organization_id, id),
    FOREIGN KEY (organization_id, channel_id) REFERENCES whatsapp_channels (organization_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX contacts_channel_user_id_key ON contacts (channel_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_channel_wa_id_key ON contacts (channel_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE TRIGGER contacts_updated_at BEFORE UPDATE ON contacts FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One conversation per (number, contact). The lease makes one handle_message run at a time answer
-- it (expiry lets a crashed run be taken over); the pause is the human handoff.
CREATE TABLE conversations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL,
    chatbot_id       uuid NOT NULL,
    channel_id       uuid NOT NULL,
    contact_id       uuid NOT NULL,
    last_inbound_at  timestamptz,     -- the customer-service window is 24 h from this
    last_outbound_at timestamptz,
    last_message_at  timestamptz,
    paused_at        timestamptz,
    paused_until     timestamptz,     -- NULL with paused_at set: paused until resumed
    paused_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    pause_reason     text,
    lease_holder     text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id),
    UNIQUE (channel_id, contact_id),
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, channel_id) REFERENCES whatsapp_channels (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, contact_id) REFERENCES contacts (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX conversations_chatbot_recent_idx
    ON conversations (organization_id, chatbot_id, last_message_at DESC NULLS LAST, id DESC);
CREATE TRIGGER conversations_updated_at BEFORE UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Every message in and out. Inbound rows are deduplicated on (channel_id, wamid); outbound parts of
-- one reply share a turn_id and are unique on (turn_id, part_index), so a retried send step finds
-- the parts it already sent. status only moves forward (sent < delivered < read); status_history
-- keeps every transition with Meta's timestamp.
CREATE TABLE messages (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL,
    chatbot_id        uuid NOT NULL,
    channel_id        uuid NOT NULL,
    conversation_id   uuid NOT NULL,
    contact_id        uuid NOT NULL,
    direction         text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    author            text NOT NULL CHECK (author IN ('customer', 'assistant', 'agent', 'system')),
    type              text NOT NULL CHECK (type IN (
                          'text', 'image', 'audio', 'video', 'document', 'sticker', 'location', 'contacts',
                          'interactive', 'button', 'reaction', 'order', 'system', 'template', 'unsupported')),
    text              text,                          -- rendering the LLM (and the dashboard) reads
    payload           jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the message object as received / sent
    media             jsonb,                         -- {id, mime_type, sha256, caption, filename, voice, ...}
    context_wamid     text,                          -- the message this one replies to
    forwarded         boolean NOT NULL DEFAULT false,
    wamid             text,
    wa_timestamp      timestamptz,                   -- Meta's timestamp (inbound)
    status            text NOT NULL CHECK (status IN (
                          'received', 'pending', 'sent', 'delivered', 'read', 'failed')),
    status_history    jsonb NOT NULL DEFAULT '[]'::jsonb,
    error_code        integer,
    error_title       text,
    rate_limited      boolean NOT NULL DEFAULT false,
    turn_id           uuid,                          -- inbound: the reply that answered it; outbound: its reply
    part_index        smallint CHECK (part_index >= 0),
    answered_at       timestamptz,                   -- inbound: when its reply was sent (or skipped)
    answer_outcome    text,                          -- inbound: replied | paused | over_quota | failed | ...
    sent_by           uuid REFERENCES users (id) ON DELETE SET NULL,  -- agent replies
    llm_model         text,
    prompt_tokens     integer CHECK (prompt_tokens >= 0),
    completion_tokens integer CHECK (completion_tokens >= 0),
    citations         jsonb,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id),
    CONSTRAINT messages_channel_wamid_key UNIQUE (channel_id, wamid),
    CONSTRAINT messages_turn_part_key UNIQUE (turn_id, part_index),
    FOREIGN KEY (organization_id, conversation_id)
        REFERENCES conversations (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, channel_id) REFERENCES whatsapp_channels (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, contact_id) REFERENCES contacts (organization_id, id) ON DELETE CASCADE
);
-- Keyset pagination of a conversation and of a chatbot's history on (created_at, id).
CREATE INDEX messages_conversation_keyset_idx ON messages (conversation_id, created_at, id);
CREATE INDEX messages_chatbot_keyset_idx ON messages (chatbot_id, created_at, id);
-- What load_context gathers: inbound messages not yet answered.
CREATE INDEX messages_unanswered_idx ON messages (conversation_id, created_at)
    WHERE direction = 'inbound' AND answered_at IS NULL;
CREATE TRIGGER messages_updated_at BEFORE UPDATE ON messages FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- A status can arrive before the send step has recorded the wamid it refers to (Meta is fast, our
-- commit may not be). Such statuses are kept here and applied when the wamid is recorded; rows older
-- than Meta's 7-day redelivery horizon can be purged.
CREATE TABLE unmatched_statuses (
    channel_id      uuid NOT NULL REFERENCES whatsapp_channels (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL,
    wamid           text NOT NULL,
    status          text NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'played', 'failed')),
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, wamid, status)
);
CREATE INDEX unmatched_statuses_received_idx ON unmatched_statuses (received_at);

-- Transactional outbox: one row per stored inbound message that should be answered, written in the
-- webhook's transaction and dispatched to the flow backend by the relay (FOR UPDATE SKIP LOCKED).
-- job_id is uuid5 of the row id, so a retried dispatch can never start a second run.
CREATE TABLE inbound_outbox (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    message_id      uuid NOT NULL UNIQUE,
    available_at    timestamptz NOT NULL DEFAULT now(),   -- next dispatch attempt (backoff)
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    job_id          uuid,
    dispatched_at   timestamptz,
    completed_at    timestamptz,
    failed_at       timestamptz,
    failure         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, message_id) REFERENCES messages (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, conversation_id)
        REFERENCES conversations (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX inbound_outbox_due_idx ON inbound_outbox (available_at) WHERE dispatched_at IS NULL;
