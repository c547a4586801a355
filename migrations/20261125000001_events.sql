-- Events: an outbox written by the very transaction of the change each one
-- reports, and the webhook endpoints it is delivered to.
--
-- Events are written by triggers on the rows whose change they report, so
-- every path that makes the change (the checkout functions, the admin
-- routes, the retention sweep) writes its event in its own transaction: no
-- change commits without its event, and a rolled-back change leaves none.
-- Payloads hold ids, communities, offers, amounts and times only.

CREATE TABLE events (
    id          uuid        PRIMARY KEY,
    seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- The writing transaction: readers page in (tx, seq) order and stop
    -- short of transactions still in flight, so a page never skips an
    -- event that commits later.
    tx          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    type        text        NOT NULL CHECK (type IN (
                    'verification.succeeded', 'verification.failed', 'membership.expiring',
                    'token.issued', 'token.redeemed', 'redemption.reversed',
                    'redemption.confirmed', 'offer.exhausted')),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    -- Whose offer the event concerns: that partner's keys and endpoints see it.
    partner_id  uuid,
    offer_id    uuid,
    data        jsonb       NOT NULL
);
CREATE INDEX events_order ON events (tx, seq);
CREATE INDEX events_partner_order ON events (partner_id, tx, seq) WHERE partner_id IS NOT NULL;
CREATE INDEX events_occurred ON events (occurred_at);

-- Receivers of events. A partner's endpoint receives its partner's events
-- only; an endpoint without a partner (an admin's) receives every event.
CREATE TABLE webhook_endpoints (
    id               uuid        PRIMARY KEY,
    partner_id       uuid        REFERENCES partners (id),
    url              text        NOT NULL,
    description      text        NOT NULL DEFAULT '',
    -- Empty: every type.
    event_types      text[]      NOT NULL DEFAULT '{}',
    enabled          boolean     NOT NULL DEFAULT true,
    -- The signing secret, sealed with AES-256-GCM under the key-encryption key.
    sealed_secret    bytea       NOT NULL,
    -- After a rotation the previous secret signs too, until previous_until.
    sealed_previous_secret bytea,
    previous_until   timestamptz,
    -- The first failure of the current run of failures (NULL after a success).
    failing_since    timestamptz,
    disabled_at      timestamptz,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_partner ON webhook_endpoints (partner_id);

-- One event for one endpoint: its delivery state. A deliverer claims a due
-- message by setting `locked_until` (a lease: a process that dies lets it
-- lapse, and the message is due again) and `claim` (its own mark, so a
-- late answer to a lapsed claim changes nothing).
CREATE TABLE webhook_messages (
    event_id        uuid        NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'failed')),
    -- Attempts made in all; the retry schedule counts from round_start
    -- (a manual redelivery starts a new round).
    attempts        integer     NOT NULL DEFAULT 0,
    round_start     integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz NOT NULL DEFAULT '-infinity',
    claim           uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_messages_endpoint ON webhook_messages (endpoint_id, state, created_at);

-- Every attempt, for the delivery log.
CREATE TABLE webhook_attempts (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid        NOT NULL,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempt          integer     NOT NULL,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    outcome          text        NOT NULL CHECK (outcome IN ('delivered', 'failed', 'gone')),
    status_code      integer,
    latency_ms       integer     NOT NULL,
    response_excerpt text,
    error            text
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);

-- membership.expiring is written once per expiry date: a re-verification
-- moves expires_at, and the next approach of it is announced again.
ALTER TABLE memberships ADD COLUMN expiring_announced_for timestamptz;
CREATE INDEX memberships_expiry ON memberships (expires_at) WHERE expires_at IS NOT NULL;

-- An instant as the payloads write it: RFC 3339 in UTC, whatever the
-- session's time zone.
CREATE FUNCTION event_instant(p timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- Writes an event and queues it for every enabled endpoint that takes it.
CREATE FUNCTION write_event(p_type text, p_partner uuid, p_offer uuid, p_data jsonb)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    event uuid := gen_random_uuid();
BEGIN
    INSERT INTO events (id, type, partner_id, offer_id, data)
    VALUES (event, p_type, p_partner, p_offer, jsonb_strip_nulls(p_data));
    INSERT INTO webhook_messages (event_id, endpoint_id)
    SELECT event, e.id FROM webhook_endpoints AS e
    WHERE e.enabled
      AND (e.partner_id IS NULL OR e.partner_id = p_partner)
      AND (cardinality(e.event_types) = 0 OR p_type = ANY (e.event_types));
    RETURN event;
END
$$;

-- verification.succeeded / verification.failed. A failure names no field,
-- and neither carries anything of the person.
CREATE FUNCTION verification_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    partner uuid;
BEGIN
    IF NEW.offer_id IS NOT NULL THEN
        SELECT partner_id INTO partner FROM offers WHERE id = NEW.offer_id;
    END IF;
    IF NEW.outcome = 'verified' THEN
        PERFORM write_event('verification.succeeded', partner, NEW.offer_id, jsonb_build_object(
            'verification_id', NEW.id, 'community', NEW.community,
            'subsegment', NEW.subsegment, 'membership_id', NEW.membership_id,
            'offer_id', NEW.offer_id, 'verified_at', event_instant(NEW.attempted_at),
            'expires_at', event_instant(NEW.expires_at)));
    ELSE
        PERFORM write_event('verification.failed', partner, NEW.offer_id, jsonb_build_object(
            'verification_id', NEW.id, 'community', NEW.community,
            'offer_id', NEW.offer_id, 'attempted_at', event_instant(NEW.attempted_at)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER verification_event AFTER INSERT ON verification_attempts
    FOR EACH ROW EXECUTE FUNCTION verification_event();

-- token.issued. No membership id: a partner must not link a person's
-- tokens across offers (the token's own `sub` is opaque for that reason).
CREATE FUNCTION token_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM write_event('token.issued',
        (SELECT partner_id FROM offers WHERE id = NEW.offer_id), NEW.offer_id,
        jsonb_build_object('token_id', NEW.id, 'offer_id', NEW.offer_id,
            'community', NEW.community, 'issued_at', event_instant(NEW.issued_at),
            'expires_at', event_instant(NEW.expires_at)));
    RETURN NULL;
END
$$;
CREATE TRIGGER token_event AFTER INSERT ON tokens
    FOR EACH ROW EXECUTE FUNCTION token_event();

CREATE FUNCTION redemption_discount(r redemptions) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'kind', r.discount_kind, 'percent_off', r.percent_off::float8,
        'amount_minor', r.discount_minor, 'currency', r.currency, 'reward', r.reward))
$$;

-- token.redeemed, redemption.reversed, redemption.confirmed.
CREATE FUNCTION redemption_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM write_event('token.redeemed', NEW.partner_id, NEW.offer_id, jsonb_build_object(
            'redemption_id', NEW.id, 'token_id', NEW.token_id, 'offer_id', NEW.offer_id,
            'amount_minor', NEW.amount_minor, 'discount', redemption_discount(NEW),
            'redeemed_at', event_instant(NEW.redeemed_at)));
        RETURN NULL;
    END IF;
    IF OLD.reversed_at IS NULL AND NEW.reversed_at IS NOT NULL THEN
        PERFORM write_event('redemption.reversed', NEW.partner_id, NEW.offer_id,
            jsonb_build_object(
                'redemption_id', NEW.id, 'token_id', NEW.token_id, 'offer_id', NEW.offer_id,
                'reversed_by', NEW.reversed_by_role,
                'reversed_at', event_instant(NEW.reversed_at)));
    END IF;
    IF OLD.confirmed_at IS NULL AND NEW.confirmed_at IS NOT NULL THEN
        PERFORM write_event('redemption.confirmed', NEW.partner_id, NEW.offer_id,
            jsonb_build_object(
                'redemption_id', NEW.id, 'token_id', NEW.token_id, 'offer_id', NEW.offer_id,
                'confirmed_at', event_instant(NEW.confirmed_at)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER redemption_redeemed AFTER INSERT ON redemptions
    FOR EACH ROW EXECUTE FUNCTION redemption_event();
CREATE TRIGGER redemption_changed AFTER UPDATE OF reversed_at, confirmed_at ON redemptions
    FOR EACH ROW EXECUTE FUNCTION redemption_event();

-- offer.exhausted: the last place under the total cap was taken.
CREATE FUNCTION offer_exhausted_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM write_event('offer.exhausted', NEW.partner_id, NEW.id, jsonb_build_object(
        'offer_id', NEW.id, 'total_cap', NEW.total_cap, 'exhausted_at', event_instant(now())));
    RETURN NULL;
END
$$;
CREATE TRIGGER offer_exhausted AFTER UPDATE OF places_taken ON offers
    FOR EACH ROW
    WHEN (NEW.total_cap IS NOT NULL AND OLD.places_taken < NEW.total_cap
          AND NEW.places_taken >= NEW.total_cap)
    EXECUTE FUNCTION offer_exhausted_event();

-- membership.expiring for memberships ending within `p_before`, each once
-- per expiry date, at most `p_limit` per call. Rows another process is
-- announcing are skipped, not waited for. Returns how many it wrote.
CREATE FUNCTION announce_expiring_memberships(p_before interval, p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    m record;
    written integer := 0;
BEGIN
    FOR m IN
        SELECT ms.id, ms.community, ms.subsegment, ms.expires_at FROM memberships AS ms
        WHERE ms.expires_at IS NOT NULL AND ms.expires_at > now()
          AND ms.expires_at <= now() + p_before
          AND ms.expiring_announced_for IS DISTINCT FROM ms.expires_at
        ORDER BY ms.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE memberships SET expiring_announced_for = m.expires_at WHERE id = m.id;
        PERFORM write_event('membership.expiring', NULL, NULL, jsonb_build_object(
            'membership_id', m.id, 'community', m.community, 'subsegment', m.subsegment,
            'expires_at', event_instant(m.expires_at)));
        written := written + 1;
    END LOOP;
    RETURN written;
END
$$;
