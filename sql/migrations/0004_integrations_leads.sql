-- Integrations (the tools the LLM may use, served by the MCP servers), per-organization enablement,
-- the price list the pricing tool quotes from, and captured leads.

CREATE TABLE integrations (
    id            text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_]{1,63}$'),
    name          text NOT NULL,
    description   text NOT NULL,
    mcp_server    text NOT NULL,                 -- which server in mcp_servers/ provides the tools
    config_schema jsonb NOT NULL DEFAULT '{"type": "object", "additionalProperties": false}'::jsonb,
    sort_order    integer NOT NULL DEFAULT 0
);

INSERT INTO integrations (id, name, description, mcp_server, config_schema, sort_order) VALUES
    ('pricing', 'Price quotes',
     'Lets the assistant look up products and services in your price list and quote totals.',
     'pricing',
     '{"type": "object", "additionalProperties": false, "properties": {
         "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "default": "USD"},
         "tax_rate_percent": {"type": "number", "minimum": 0, "maximum": 100, "default": 0}}}'::jsonb,
     0),
    ('lead_capture', 'Lead capture',
     'Lets the assistant record a prospect''s name, contact details and interest as a lead.',
     'leads',
     '{"type": "object", "additionalProperties": false, "properties": {
         "notify_email": {"type": "string", "format": "email"}}}'::jsonb,
     1),
    ('handoff', 'Human handoff',
     'Lets the assistant hand the conversation to a person on your team and pause itself.',
     'handoff',
     '{"type": "object", "additionalProperties": false, "properties": {
         "notify_phone": {"type": "string", "pattern": "^[0-9]{6,20}$"},
         "pause_minutes": {"type": "integer", "minimum": 5, "maximum": 10080, "default": 240}}}'::jsonb,
     2);

CREATE TABLE organization_integrations (
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    integration_id   text NOT NULL REFERENCES integrations (id),
    enabled          boolean NOT NULL DEFAULT true,
    config           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(config) = 'object'),
    secret_encrypted text,                      -- an integration credential, encrypted like channel secrets
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, integration_id)
);
CREATE TRIGGER organization_integrations_updated_at BEFORE UPDATE ON organization_integrations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE price_items (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id       uuid,                        -- NULL: every chatbot of the organization
    sku              text NOT NULL,
    name             text NOT NULL,
    description      text NOT NULL DEFAULT '',
    unit             text NOT NULL DEFAULT 'unit',
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    currency         text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    active           boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, sku),
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE
);
CREATE TRIGGER price_items_updated_at BEFORE UPDATE ON price_items FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE leads (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    chatbot_id      uuid NOT NULL,
    conversation_id uuid,
    contact_id      uuid,
    name            text,
    phone           text,
    email           text,
    company         text,
    interest        text,
    notes           text,
    status          text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'contacted', 'qualified', 'won', 'lost')),
    data            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id),
    FOREIGN KEY (organization_id, chatbot_id) REFERENCES chatbots (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, conversation_id)
        REFERENCES conversations (organization_id, id) ON DELETE SET NULL (conversation_id),
    FOREIGN KEY (organization_id, contact_id)
        REFERENCES contacts (organization_id, id) ON DELETE SET NULL (contact_id)
);
CREATE INDEX leads_listing_idx ON leads (organization_id, created_at DESC, id DESC);
CREATE INDEX leads_chatbot_idx ON leads (organization_id, chatbot_id, created_at DESC, id DESC);
CREATE TRIGGER leads_updated_at BEFORE UPDATE ON leads FOR EACH ROW EXECUTE FUNCTION set_updated_at();
