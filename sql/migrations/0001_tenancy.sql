-- Organizations (tenants), their users and roles, billing tiers and monthly usage.
-- Convention for the whole schema: every tenant-owned row carries organization_id, and child rows
-- reference their parent with a composite (organization_id, id) foreign key, so a row can never
-- point at another organization's parent.

CREATE EXTENSION IF NOT EXISTS vector;

-- Keeps updated_at honest without every UPDATE having to remember it.
CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE billing_tiers (
    code                  text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,31}$'),
    name                  text NOT NULL,
    monthly_message_limit integer CHECK (monthly_message_limit >= 0),  -- NULL: unlimited
    monthly_token_limit   bigint CHECK (monthly_token_limit >= 0),     -- NULL: unlimited
    max_chatbots          integer CHECK (max_chatbots >= 0),
    max_channels          integer CHECK (max_channels >= 0),
    price_cents           integer NOT NULL DEFAULT 0 CHECK (price_cents >= 0),
    sort_order            integer NOT NULL DEFAULT 0
);

INSERT INTO billing_tiers (code, name, monthly_message_limit, monthly_token_limit, max_chatbots, max_channels,
                           price_cents, sort_order) VALUES
    ('free',       'Free',       500,    1000000,   1,    1,    0,     0),
    ('starter',    'Starter',    5000,   10000000,  3,    3,    2900,  1),
    ('pro',        'Pro',        50000,  100000000, 20,   20,   14900, 2),
    ('enterprise', 'Enterprise', NULL,   NULL,      NULL, NULL, 0,     3);

CREATE TABLE organizations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    billing_tier      text NOT NULL DEFAULT 'free' REFERENCES billing_tiers (code),
    -- Sent (at most once per period) when a customer writes while the organization is over quota.
    quota_notice      text NOT NULL DEFAULT
        'Sorry, we cannot answer right now. A member of our team will get back to you.',
    timezone          text NOT NULL DEFAULT 'UTC',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE TRIGGER organizations_updated_at BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    password_hash   text NOT NULL,
    full_name       text,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'agent')),
    is_active       boolean NOT NULL DEFAULT true,
    invited_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    last_login_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id)
);
-- One account per email across the platform (login does not ask for an organization).
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_organization_idx ON users (organization_id, created_at);
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Rotating refresh tokens: each use issues a successor in the same family; presenting a used token
-- again revokes the whole family (token theft detection). Only a hash of the token is stored.
CREATE TABLE refresh_tokens (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    user_id         uuid NOT NULL,
    family_id       uuid NOT NULL,
    token_hash      bytea NOT NULL UNIQUE,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    revoked_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Monthly usage per organization; period is the first day of the month (UTC).
CREATE TABLE usage_monthly (
    organization_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period               date NOT NULL CHECK (extract(day FROM period) = 1),
    messages_in          integer NOT NULL DEFAULT 0,
    messages_out         integer NOT NULL DEFAULT 0,
    prompt_tokens        bigint NOT NULL DEFAULT 0,
    completion_tokens    bigint NOT NULL DEFAULT 0,
    embedding_tokens     bigint NOT NULL DEFAULT 0,
    quota_notice_sent_at timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, period)
);
