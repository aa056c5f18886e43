-- Webhook intake helpers: contact identity resolution in one round trip.

-- Find or create the contact a WhatsApp user is on one channel, keyed on the business-scoped
-- user_id when Meta sends one, else on wa_id (the phone); both are stored, either may be missing.
-- - A contact first seen by phone adopts the user_id when it later arrives with one.
-- - A phone number that now belongs to another user_id is released by its previous contact
--   (numbers are recycled); the history stays with the old contact. A phone-only contact is never
--   stripped of its phone (it would have no identity left).
-- - Concurrent deliveries for a new user race on the unique indexes; the loser retries the lookup.
CREATE FUNCTION ingress_upsert_contact(
    p_organization_id uuid, p_channel_id uuid, p_wa_id text, p_user_id text,
    p_profile_name text, p_username text, p_seen_at timestamptz
) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_wa_id IS NULL AND p_user_id IS NULL THEN
        RAISE EXCEPTION 'a contact needs a wa_id or a user_id' USING ERRCODE = 'check_violation';
    END IF;
    FOR attempt IN 1..3 LOOP
        v_id := NULL;
        IF p_user_id IS NOT NULL THEN
            SELECT id INTO v_id FROM contacts WHERE channel_id = p_channel_id AND user_id = p_user_id FOR UPDATE;
        END IF;
        IF v_id IS NULL AND p_wa_id IS NOT NULL THEN
            SELECT id INTO v_id FROM contacts
            WHERE channel_id = p_channel_id AND wa_id = p_wa_id
              AND (p_user_id IS NULL OR user_id IS NULL OR user_id = p_user_id)
            FOR UPDATE;
        END IF;
        IF v_id IS NOT NULL THEN
            IF p_wa_id IS NOT NULL AND p_user_id IS NOT NULL THEN  -- without a user_id, v_id owns the wa_id
                UPDATE contacts SET wa_id = NULL
                WHERE channel_id = p_channel_id AND wa_id = p_wa_id AND id <> v_id AND user_id IS NOT NULL;
            END IF;
            UPDATE contacts c
            SET user_id = COALESCE(c.user_id, p_user_id),
                wa_id = CASE
                    WHEN p_wa_id IS NULL OR EXISTS (
                        SELECT 1 FROM contacts o WHERE o.channel_id = p_channel_id AND o.wa_id = p_wa_id AND o.id <> v_id)
                    THEN c.wa_id ELSE p_wa_id END,
                profile_name = COALESCE(p_profile_name, c.profile_name),
                username = COALESCE(p_username, c.username),
                last_seen_at = GREATEST(c.last_seen_at, p_seen_at)
            WHERE c.id = v_id
              -- skip the write (a new row version and its index entries) when nothing changed;
              -- last_seen_at is kept to the minute
              AND (c.user_id IS DISTINCT FROM COALESCE(c.user_id, p_user_id)
                   OR (p_wa_id IS NOT NULL AND c.wa_id IS DISTINCT FROM p_wa_id)
                   OR (p_profile_name IS NOT NULL AND c.profile_name IS DISTINCT FROM p_profile_name)
                   OR (p_username IS NOT NULL AND c.username IS DISTINCT FROM p_username)
                   OR c.last_seen_at IS NULL OR c.last_seen_at < p_seen_at - interval '1 minute');
            RETURN v_id;
        END IF;
        BEGIN
            IF p_wa_id IS NOT NULL THEN
                UPDATE contacts SET wa_id = NULL
                WHERE channel_id = p_channel_id AND wa_id = p_wa_id AND user_id IS NOT NULL
                  AND user_id IS DISTINCT FROM p_user_id;
            END IF;
            INSERT INTO contacts (organization_id, channel_id, wa_id, user_id, profile_name, username, last_seen_at)
            VALUES (p_organization_id, p_channel_id, p_wa_id, p_user_id, p_profile_name, p_username, p_seen_at)
            RETURNING id INTO v_id;
            RETURN v_id;
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- another delivery created it first: look it up again
        END;
    END LOOP;
    RAISE EXCEPTION 'could not resolve contact on channel %', p_channel_id USING ERRCODE = 'serialization_failure';
END
$$;

-- Statuses only move forward: pending/received < sent < failed < delivered < read. (A failure comes
-- after "sent", never after delivery; "played" (voice) counts as read.)
CREATE FUNCTION message_status_rank(p_status text) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_status
        WHEN 'received' THEN 0 WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'failed' THEN 2
        WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 WHEN 'played' THEN 4 ELSE 0 END
$$;

-- Apply one status webhook to the outbound message it names. Returns true when the message is
-- known; false when it is not (yet): the status is then kept in unmatched_statuses and applied by
-- record_sent_wamid() when the send step records that wamid.
CREATE FUNCTION apply_message_status(
    p_organization_id uuid, p_channel_id uuid, p_wamid text, p_status text, p_at timestamptz,
    p_error_code integer, p_error_title text, p_payload jsonb
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_entry jsonb := jsonb_build_object('status', p_status, 'at', p_at)
        || CASE WHEN p_error_code IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('error_code', p_error_code, 'error_title', p_error_title) END;
BEGIN
    UPDATE messages m SET
        status = CASE WHEN message_status_rank(p_status) > message_status_rank(m.status)
                      THEN CASE p_status WHEN 'played' THEN 'read' ELSE p_status END
                      ELSE m.status END,
        status_history = CASE WHEN m.status_history @> jsonb_build_array(jsonb_build_object('status', p_status))
                              THEN m.status_history ELSE m.status_history || jsonb_build_array(v_entry) END,
        error_code = CASE WHEN p_status = 'failed' THEN p_error_code ELSE m.error_code END,
        error_title = CASE WHEN p_status = 'failed' THEN p_error_title ELSE m.error_title END
    WHERE m.channel_id = p_channel_id AND m.wamid = p_wamid AND m.direction = 'outbound'
      AND m.organization_id = p_organization_id;
    IF FOUND THEN
        RETURN true;
    END IF;
    INSERT INTO unmatched_statuses (channel_id, organization_id, wamid, status, payload, received_at)
    VALUES (p_channel_id, p_organization_id, p_wamid, p_status,
            p_payload || jsonb_build_object('_at', p_at, '_error_code', p_error_code, '_error_title', p_error_title),
            now())
    ON CONFLICT DO NOTHING;
    RETURN false;
END
$$;

-- Called by the send step right after Meta accepted a message: records the wamid on the outbound
-- row and applies any status that arrived before it.
CREATE FUNCTION record_sent_wamid(p_organization_id uuid, p_message_id uuid, p_wamid text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_channel uuid;
    v_status record;
BEGIN
    UPDATE messages SET wamid = p_wamid,
        status = CASE WHEN message_status_rank(status) < message_status_rank('sent') THEN 'sent' ELSE status END,
        status_history = status_history || jsonb_build_array(jsonb_build_object('status', 'accepted', 'at', now()))
    WHERE id = p_message_id AND organization_id = p_organization_id
    RETURNING channel_id INTO v_channel;
    IF v_channel IS NULL THEN
        RAISE EXCEPTION 'message % not found', p_message_id USING ERRCODE = 'no_data_found';
    END IF;
    FOR v_status IN
        DELETE FROM unmatched_statuses WHERE channel_id = v_channel AND wamid = p_wamid
        RETURNING status, payload
    LOOP
        PERFORM apply_message_status(p_organization_id, v_channel, p_wamid, v_status.status,
            (v_status.payload->>'_at')::timestamptz, (v_status.payload->>'_error_code')::integer,
            v_status.payload->>'_error_title', v_status.payload);
    END LOOP;
END
$$;

-- Store everything one webhook POST carried, in one statement (atomic in itself).
-- p_messages: [{organization_id, chatbot_id, channel_id, wa_id, user_id, profile_name, username,
--   received_at, type, text, payload, media, context_wamid, forwarded, wamid, wa_timestamp,
--   answer (should be answered), admitted (within the rate limit)}], in lock order.
-- p_statuses: [{organization_id, channel_id, wamid, status, at, error_code, error_title, payload}].
-- Returns the count of each outcome.
CREATE FUNCTION ingress_store_batch(p_messages jsonb, p_statuses jsonb, OUT accepted integer,
    OUT duplicate integer, OUT rate_limited integer, OUT new_outbox integer, OUT applied integer,
    OUT unmatched integer) LANGUAGE plpgsql AS $$
DECLARE
    m jsonb;
    s jsonb;
    v_contact uuid;
    v_conversation uuid;
    v_message uuid;
    v_org uuid;
    v_channel uuid;
    v_received timestamptz;
    v_limited boolean;
BEGIN
    accepted := 0; duplicate := 0; rate_limited := 0; new_outbox := 0; applied := 0; unmatched := 0;
    FOR m IN SELECT value FROM jsonb_array_elements(p_messages) LOOP
        v_org := (m->>'organization_id')::uuid;
        v_channel := (m->>'channel_id')::uuid;
        v_received := (m->>'received_at')::timestamptz;
        v_contact := ingress_upsert_contact(v_org, v_channel, m->>'wa_id', m->>'user_id', m->>'profile_name',
                                            m->>'username', v_received);
        INSERT INTO conversations (organization_id, chatbot_id, channel_id, contact_id, last_inbound_at, last_message_at)
        VALUES (v_org, (m->>'chatbot_id')::uuid, v_channel, v_contact, v_received, v_received)
        ON CONFLICT (channel_id, contact_id) DO UPDATE SET
            last_inbound_at = GREATEST(conversations.last_inbound_at, EXCLUDED.last_inbound_at),
            last_message_at = GREATEST(conversations.last_message_at, EXCLUDED.last_message_at)
        RETURNING id INTO v_conversation;
        v_limited := (m->>'answer')::boolean AND NOT (m->>'admitted')::boolean;
        v_message := NULL;
        INSERT INTO messages (organization_id, chatbot_id, channel_id, conversation_id, contact_id, direction, author,
                              type, text, payload, media, context_wamid, forwarded, wamid, wa_timestamp, status,
                              rate_limited, answered_at, answer_outcome)
        VALUES (v_org, (m->>'chatbot_id')::uuid, v_channel, v_conversation, v_contact, 'inbound', 'customer',
                m->>'type', m->>'text', m->'payload', NULLIF(m->'media', 'null'::jsonb), m->>'context_wamid',
                (m->>'forwarded')::boolean, m->>'wamid', (m->>'wa_timestamp')::timestamptz, 'received',
                v_limited, CASE WHEN v_limited THEN now() END, CASE WHEN v_limited THEN 'rate_limited' END)
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING id INTO v_message;
        IF v_message IS NULL THEN
            duplicate := duplicate + 1;
        ELSIF v_limited THEN
            rate_limited := rate_limited + 1;
        ELSE
            accepted := accepted + 1;
            IF (m->>'answer')::boolean THEN
                INSERT INTO inbound_outbox (organization_id, conversation_id, message_id)
                VALUES (v_org, v_conversation, v_message);
                new_outbox := new_outbox + 1;
            END IF;
        END IF;
    END LOOP;
    FOR s IN SELECT value FROM jsonb_array_elements(p_statuses) LOOP
        IF apply_message_status((s->>'organization_id')::uuid, (s->>'channel_id')::uuid, s->>'wamid', s->>'status',
                                (s->>'at')::timestamptz, (s->>'error_code')::integer, s->>'error_title', s->'payload')
        THEN
            applied := applied + 1;
        ELSE
            unmatched := unmatched + 1;
        END IF;
    END LOOP;
END
$$;
