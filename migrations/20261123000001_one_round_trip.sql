-- The checkout path in one round trip each: verification, issuance and
-- redemption are server-side functions that do the whole use case, its
-- idempotent answer included, in the caller's single statement.

-- Places under the caps are counted as they are taken and given back, so
-- issuance costs the same however many tokens are outstanding. A place is
-- held by a token in state issued or redeemed. An issued token past its
-- expiry keeps its place until it is reclaimed (state `expired`), which
-- issuance does when it finds a cap full: the counts may run above the live
-- tokens for a while, never below, so a cap never overshoots.
ALTER TABLE offers
    ADD COLUMN places_taken integer NOT NULL DEFAULT 0 CHECK (places_taken >= 0);

-- Per-person counts, kept for offers with a per-person limit (and rebuilt
-- when an offer's terms are replaced).
CREATE TABLE offer_person_places (
    offer_id   uuid    NOT NULL REFERENCES offers (id),
    person_key bytea   NOT NULL,
    taken      integer NOT NULL CHECK (taken >= 0),
    PRIMARY KEY (offer_id, person_key)
);

ALTER TABLE tokens DROP CONSTRAINT tokens_state_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_state_check
    CHECK (state IN ('issued', 'redeemed', 'reversed', 'revoked', 'expired'));

UPDATE offers SET places_taken = (
    SELECT count(*) FROM tokens AS t
    WHERE t.offer_id = offers.id AND t.state IN ('issued', 'redeemed'));
INSERT INTO offer_person_places (offer_id, person_key, taken)
SELECT offer_id, person_key, count(*) FROM tokens
WHERE state IN ('issued', 'redeemed') AND person_key IS NOT NULL
GROUP BY offer_id, person_key;

-- A redemption keeps the discount it granted (the offer's terms may change
-- later) and the API key that made it.
ALTER TABLE redemptions
    ADD COLUMN api_key_id      text,
    ADD COLUMN discount_kind   text,
    ADD COLUMN percent_off     numeric(5, 2),
    ADD COLUMN discount_minor  bigint,
    ADD COLUMN currency        text,
    ADD COLUMN reward          text;
UPDATE redemptions AS r
SET discount_kind = o.discount_kind, percent_off = o.percent_off,
    discount_minor = o.amount_minor, currency = o.currency, reward = o.reward
FROM offers AS o WHERE o.id = r.offer_id;
ALTER TABLE redemptions ALTER COLUMN discount_kind SET NOT NULL;

-- What a success granted, so an idempotent retry answers as the first did.
ALTER TABLE verification_attempts ADD COLUMN expires_at timestamptz;

-- Idempotency keys hold the first answer as the outcome and the rows it
-- created, written by the same call as the effect: there is no "running"
-- state left behind by a process that died.
DELETE FROM idempotency_keys WHERE status IS NULL OR status >= 500;
ALTER TABLE idempotency_keys
    ADD COLUMN outcome        text,
    ADD COLUMN redemption_id  uuid,
    ADD COLUMN token_id       uuid,
    ADD COLUMN attempt_id     uuid,
    ADD COLUMN token_outcome  text;
UPDATE idempotency_keys
SET outcome = CASE WHEN status = 201 THEN 'redeemed'
                   ELSE coalesce(response ->> 'type', 'already_redeemed') END,
    redemption_id = CASE WHEN status = 201 THEN (response ->> 'id')::uuid END;
ALTER TABLE idempotency_keys
    DROP COLUMN status,
    DROP COLUMN response,
    ALTER COLUMN outcome SET NOT NULL;

-- Gives back a place held by a token of the offer. The caller holds the
-- offer's row lock (every change of places locks the offer first).
CREATE FUNCTION give_back_place(p_offer uuid, p_person bytea) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE offers SET places_taken = greatest(places_taken - 1, 0) WHERE id = p_offer;
    IF p_person IS NOT NULL THEN
        UPDATE offer_person_places SET taken = greatest(taken - 1, 0)
        WHERE offer_id = p_offer AND person_key = p_person;
    END IF;
END
$$;

-- Marks the offer's issued tokens that have expired as `expired` and gives
-- their places back; with `p_person`, only that person's. Returns how many.
CREATE FUNCTION reclaim_expired_places(p_offer uuid, p_person bytea) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    freed integer;
BEGIN
    -- Most refusals at a full cap find nothing to reclaim: look first,
    -- without a lock, so they do not queue on the offer's row.
    IF NOT EXISTS (
        SELECT 1 FROM tokens
        WHERE offer_id = p_offer AND state = 'issued' AND expires_at <= now()
          AND (p_person IS NULL OR person_key = p_person)) THEN
        RETURN 0;
    END IF;
    PERFORM 1 FROM offers WHERE id = p_offer FOR UPDATE;
    WITH expired AS (
        UPDATE tokens SET state = 'expired'
        WHERE offer_id = p_offer AND state = 'issued' AND expires_at <= now()
          AND (p_person IS NULL OR person_key = p_person)
        RETURNING person_key),
    per_person AS (
        UPDATE offer_person_places AS p SET taken = greatest(p.taken - e.n, 0)
        FROM (SELECT person_key, count(*) AS n FROM expired
              WHERE person_key IS NOT NULL GROUP BY person_key) AS e
        WHERE p.offer_id = p_offer AND p.person_key = e.person_key)
    SELECT count(*) INTO freed FROM expired;
    IF freed > 0 THEN
        UPDATE offers SET places_taken = greatest(places_taken - freed, 0) WHERE id = p_offer;
    END IF;
    RETURN freed;
END
$$;

-- Recounts an offer's places from its tokens (after its terms change).
CREATE FUNCTION recount_places(p_offer uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM offers WHERE id = p_offer FOR UPDATE;
    UPDATE offers SET places_taken = (
        SELECT count(*) FROM tokens
        WHERE offer_id = p_offer AND state IN ('issued', 'redeemed'))
    WHERE id = p_offer;
    DELETE FROM offer_person_places WHERE offer_id = p_offer;
    INSERT INTO offer_person_places (offer_id, person_key, taken)
    SELECT p_offer, person_key, count(*) FROM tokens
    WHERE offer_id = p_offer AND state IN ('issued', 'redeemed') AND person_key IS NOT NULL
    GROUP BY person_key;
END
$$;

-- Takes a place under the offer's caps for a member and inserts the token.
-- Returns `issued`, or why not: `unknown_offer`, `offer_closed`,
-- `wrong_community`, `offer_exhausted`, `person_limit_reached`.
--
-- The conditional UPDATE of the offer's count is the cap: under concurrent
-- issuance each one re-reads the latest count once the row is free, so no
-- two take the last place. The per-person count is a conditional upsert of
-- its own row, taken after the offer's row lock (one lock order).
CREATE FUNCTION take_place(
    p_token uuid, p_offer uuid, p_membership uuid, p_person bytea,
    p_community text, p_subsegment text, p_kid text
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    offer offers%ROWTYPE;
BEGIN
    SELECT * INTO offer FROM offers WHERE id = p_offer;
    IF NOT FOUND THEN
        RETURN 'unknown_offer';
    END IF;
    IF NOT (p_community = ANY (offer.communities))
       OR (cardinality(offer.subsegments) > 0
           AND (p_subsegment IS NULL OR NOT (p_subsegment = ANY (offer.subsegments)))) THEN
        RETURN 'wrong_community';
    END IF;

    FOR pass IN 1..2 LOOP
        UPDATE offers SET places_taken = places_taken + 1
        WHERE id = p_offer AND status = 'active'
          AND (starts_at IS NULL OR starts_at <= now()) AND (ends_at IS NULL OR now() < ends_at)
          AND (total_cap IS NULL OR places_taken < total_cap)
        RETURNING * INTO offer;
        EXIT WHEN FOUND;
        SELECT * INTO offer FROM offers WHERE id = p_offer;
        IF NOT (offer.status = 'active'
                AND (offer.starts_at IS NULL OR offer.starts_at <= now())
                AND (offer.ends_at IS NULL OR now() < offer.ends_at)) THEN
            RETURN 'offer_closed';
        END IF;
        IF pass = 2 OR reclaim_expired_places(p_offer, NULL) = 0 THEN
            RETURN 'offer_exhausted';
        END IF;
    END LOOP;

    IF offer.per_person_limit IS NOT NULL THEN
        FOR pass IN 1..2 LOOP
            INSERT INTO offer_person_places AS p (offer_id, person_key, taken)
            VALUES (p_offer, p_person, 1)
            ON CONFLICT (offer_id, person_key) DO UPDATE SET taken = p.taken + 1
                WHERE p.taken < offer.per_person_limit;
            EXIT WHEN FOUND;
            IF pass = 2 OR reclaim_expired_places(p_offer, p_person) = 0 THEN
                PERFORM give_back_place(p_offer, NULL);
                RETURN 'person_limit_reached';
            END IF;
        END LOOP;
    END IF;

    INSERT INTO tokens (id, offer_id, membership_id, person_key, community, kid, expires_at)
    VALUES (p_token, p_offer, p_membership, p_person, p_community, p_kid,
            now() + make_interval(secs => offer.token_ttl_secs));
    RETURN 'issued';
END
$$;

-- POST /v1/tokens in one call: the first answer under the idempotency key
-- (when one is given), else the membership's check, a place and the token,
-- with the key's answer written in the same transaction. A retry racing the
-- first call fails on the key's primary key and rolls everything back; the
-- caller then reads the first answer.
CREATE FUNCTION issue_token(
    p_api_key text, p_key text, p_request_hash bytea,
    p_token uuid, p_offer uuid, p_membership uuid, p_kid text
) RETURNS TABLE (
    replayed boolean, request_hash bytea, outcome text,
    token_id uuid, offer_id uuid, membership_id uuid, community text, kid text,
    issued_at timestamptz, expires_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    member memberships%ROWTYPE;
    result text;
BEGIN
    IF p_key IS NOT NULL THEN
        RETURN QUERY
            SELECT true, k.request_hash, k.outcome, t.id, t.offer_id, t.membership_id,
                   t.community, t.kid, t.issued_at, t.expires_at
            FROM idempotency_keys AS k LEFT JOIN tokens AS t ON t.id = k.token_id
            WHERE k.api_key_id = p_api_key AND k.key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    SELECT * INTO member FROM memberships WHERE id = p_membership;
    IF NOT FOUND THEN
        result := 'unknown_membership';
    ELSIF member.expires_at IS NOT NULL AND member.expires_at <= now() THEN
        result := 'membership_lapsed';
    ELSE
        result := take_place(p_token, p_offer, p_membership, member.person_key,
                             member.community, member.subsegment, p_kid);
    END IF;

    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (api_key_id, key, request_hash, outcome, token_id)
        VALUES (p_api_key, p_key, p_request_hash, result,
                CASE WHEN result = 'issued' THEN p_token END);
    END IF;

    RETURN QUERY
        SELECT false, p_request_hash, result, t.id, t.offer_id, t.membership_id,
               t.community, t.kid, t.issued_at, t.expires_at
        FROM (SELECT 1) AS one LEFT JOIN tokens AS t ON t.id = p_token AND result = 'issued';
END
$$;

-- POST /v1/redemptions in one call: the first answer under the key, else
-- the token moved from issued (and unexpired) to redeemed with its
-- redemption row, or the reason it cannot be, and the key's answer, all in
-- one transaction. Outcomes: `redeemed`, `unknown_token`, `token_revoked`,
-- `already_redeemed`, `token_expired`.
CREATE FUNCTION redeem_token(
    p_api_key text, p_key text, p_request_hash bytea,
    p_token uuid, p_redemption uuid, p_order_ref text, p_amount bigint
) RETURNS TABLE (
    replayed boolean, request_hash bytea, outcome text,
    id uuid, offer_id uuid, redeemed_at timestamptz,
    discount_kind text, percent_off double precision, amount_minor bigint,
    currency text, reward text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    result text;
    current_state text;
    live boolean;
BEGIN
    RETURN QUERY
        SELECT true, k.request_hash, k.outcome, r.id, r.offer_id, r.redeemed_at,
               r.discount_kind, r.percent_off::float8, r.discount_minor, r.currency, r.reward
        FROM idempotency_keys AS k LEFT JOIN redemptions AS r ON r.id = k.redemption_id
        WHERE k.api_key_id = p_api_key AND k.key = p_key;
    IF FOUND THEN
        RETURN;
    END IF;

    WITH token AS (
        UPDATE tokens SET state = 'redeemed'
        WHERE tokens.id = p_token AND tokens.state = 'issued' AND tokens.expires_at > now()
        RETURNING tokens.id, tokens.offer_id)
    INSERT INTO redemptions (id, token_id, offer_id, partner_id, order_ref, amount_minor,
                             api_key_id, discount_kind, percent_off, discount_minor,
                             currency, reward)
    SELECT p_redemption, token.id, token.offer_id, o.partner_id, p_order_ref, p_amount,
           p_api_key, o.discount_kind, o.percent_off, o.amount_minor, o.currency, o.reward
    FROM token JOIN offers AS o ON o.id = token.offer_id;

    IF FOUND THEN
        result := 'redeemed';
    ELSE
        -- A fresh snapshot: it sees what a concurrent call committed.
        SELECT t.state, t.expires_at > now() INTO current_state, live
        FROM tokens AS t WHERE t.id = p_token;
        result := CASE
            WHEN current_state IS NULL THEN 'unknown_token'
            WHEN current_state IN ('revoked', 'reversed') THEN 'token_revoked'
            WHEN current_state = 'redeemed' THEN 'already_redeemed'
            WHEN current_state = 'expired' OR NOT live THEN 'token_expired'
            ELSE 'already_redeemed' END;
    END IF;

    INSERT INTO idempotency_keys (api_key_id, key, request_hash, outcome, redemption_id)
    VALUES (p_api_key, p_key, p_request_hash, result,
            CASE WHEN result = 'redeemed' THEN p_redemption END);

    RETURN QUERY
        SELECT false, p_request_hash, result, r.id, r.offer_id, r.redeemed_at,
               r.discount_kind, r.percent_off::float8, r.discount_minor, r.currency, r.reward
        FROM (SELECT 1) AS one
        LEFT JOIN redemptions AS r ON r.id = p_redemption AND result = 'redeemed';
END
$$;

-- POST /v1/verifications in one call: the first answer under the key (when
-- one is given); else the rate limits (the identity subjects stay locked
-- until the outcome commits, see check_verification_limits), the record
-- match, the attempt with its strikes or its membership, and, with an offer,
-- a place and the token; the key's answer in the same transaction.
--
-- The membership lasts until the earlier of the record's end and the
-- community's re-verification period for the record's sub-status: the
-- periods come from the caller as (sub-status, days) pairs plus the default,
-- NULL days meaning no period. `p_age_ok` is the caller's age gate on the
-- birth date given. `wait` is set (seconds) when a limit refuses the attempt.
CREATE FUNCTION verify_consumer(
    p_api_key text, p_key text, p_request_hash bytea,
    p_attempt uuid, p_community text, p_subsegment text,
    p_email bytea, p_name_dob bytea, p_license bytea,
    p_subjects bytea[], p_limits integer[], p_exact boolean[], p_window_secs double precision,
    p_age_ok boolean, p_claimed_person bytea, p_customer_ref bytea,
    p_period_subsegments text[], p_period_days integer[], p_default_days integer,
    p_offer uuid, p_token uuid, p_kid text
) RETURNS TABLE (
    replayed boolean, request_hash bytea, wait double precision,
    outcome text, attempt_id uuid, subsegment text, membership_id uuid, expires_at timestamptz,
    token_outcome text, token_id uuid, token_offer_id uuid, token_membership_id uuid,
    token_community text, token_kid text, token_issued_at timestamptz, token_expires_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    found_wait double precision;
    rec verification_records%ROWTYPE;
    period integer;
    ends timestamptz;
    member uuid;
    member_ends timestamptz;
    result text;
    token_result text;
BEGIN
    IF p_key IS NOT NULL THEN
        RETURN QUERY
            SELECT true, k.request_hash, NULL::float8, k.outcome, a.id, a.subsegment,
                   a.membership_id, a.expires_at, k.token_outcome, t.id, t.offer_id,
                   t.membership_id, t.community, t.kid, t.issued_at, t.expires_at
            FROM idempotency_keys AS k
            LEFT JOIN verification_attempts AS a ON a.id = k.attempt_id
            LEFT JOIN tokens AS t ON t.id = k.token_id
            WHERE k.api_key_id = p_api_key AND k.key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    found_wait := check_verification_limits(p_subjects, p_limits, p_exact,
                                            make_interval(secs => p_window_secs));
    IF found_wait IS NOT NULL THEN
        RETURN QUERY SELECT false, p_request_hash, found_wait, NULL::text, NULL::uuid,
            NULL::text, NULL::uuid, NULL::timestamptz, NULL::text, NULL::uuid, NULL::uuid,
            NULL::uuid, NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;

    SELECT * INTO rec FROM verification_records AS v
    WHERE v.community = p_community
      AND v.retired_at IS NULL
      AND (v.valid_from IS NULL OR v.valid_from <= now())
      AND (v.valid_until IS NULL OR v.valid_until > now())
      AND (p_subsegment IS NULL OR v.subsegment = p_subsegment)
      AND (v.email_ix = p_email OR v.name_dob_ix = p_name_dob OR v.license_ix = p_license)
      AND (p_email IS NULL OR v.email_ix IS NULL OR v.email_ix = p_email)
      AND (p_name_dob IS NULL OR v.name_dob_ix IS NULL OR v.name_dob_ix = p_name_dob)
      AND (p_license IS NULL OR v.license_ix IS NULL OR v.license_ix = p_license)
    ORDER BY v.valid_until DESC NULLS FIRST
    LIMIT 1;

    IF NOT FOUND OR NOT p_age_ok THEN
        result := 'not_verified';
        INSERT INTO verification_attempts
            (id, community, subsegment, outcome, person_key, offer_id, customer_ref_ix, api_key_id)
        VALUES (p_attempt, p_community, p_subsegment, 'not_verified', p_claimed_person, p_offer,
                p_customer_ref, p_api_key);
        DELETE FROM verification_strikes
        WHERE subject = ANY (p_subjects) AND struck_at <= now() - make_interval(secs => p_window_secs);
        INSERT INTO verification_strikes (subject, attempt_id)
        SELECT s, p_attempt FROM unnest(p_subjects) AS s;
    ELSE
        result := 'verified';
        period := CASE WHEN rec.subsegment = ANY (p_period_subsegments)
                     THEN p_period_days[array_position(p_period_subsegments, rec.subsegment)]
                     ELSE p_default_days END;
        ends := least(rec.valid_until, now() + make_interval(days => period));
        INSERT INTO memberships AS m
            (person_key, community, subsegment, record_id, verified_at, expires_at)
        VALUES (rec.person_key, p_community, rec.subsegment, rec.id, now(), ends)
        ON CONFLICT (person_key, community) DO UPDATE SET
            subsegment = EXCLUDED.subsegment, record_id = EXCLUDED.record_id,
            verified_at = EXCLUDED.verified_at, expires_at = EXCLUDED.expires_at
        RETURNING m.id, m.expires_at INTO member, member_ends;
        INSERT INTO verification_attempts
            (id, community, subsegment, outcome, person_key, membership_id, offer_id,
             customer_ref_ix, api_key_id, expires_at)
        VALUES (p_attempt, p_community, rec.subsegment, 'verified', rec.person_key, member,
                p_offer, p_customer_ref, p_api_key, member_ends);
        IF p_offer IS NOT NULL THEN
            token_result := take_place(p_token, p_offer, member, rec.person_key, p_community,
                                       rec.subsegment, p_kid);
        END IF;
    END IF;

    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys
            (api_key_id, key, request_hash, outcome, attempt_id, token_id, token_outcome)
        VALUES (p_api_key, p_key, p_request_hash, result, p_attempt,
                CASE WHEN token_result = 'issued' THEN p_token END, token_result);
    END IF;

    RETURN QUERY
        SELECT false, p_request_hash, NULL::float8, result, p_attempt,
               CASE WHEN result = 'verified' THEN rec.subsegment ELSE p_subsegment END,
               member, member_ends, token_result, t.id, t.offer_id, t.membership_id,
               t.community, t.kid, t.issued_at, t.expires_at
        FROM (SELECT 1) AS one
        LEFT JOIN tokens AS t ON t.id = p_token AND token_result = 'issued';
END
$$;

-- Revokes an issued token and gives its place back. Returns the token's
-- state afterwards (NULL when there is no such token) and whether this
-- call revoked it.
CREATE FUNCTION revoke_token(p_token uuid)
RETURNS TABLE (revoked boolean, state text, expired boolean, revoked_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    offer uuid;
    person bytea;
    when_revoked timestamptz;
BEGIN
    PERFORM 1 FROM offers WHERE id = (SELECT t.offer_id FROM tokens AS t WHERE t.id = p_token)
    FOR UPDATE;
    UPDATE tokens AS t SET state = 'revoked', revoked_at = now()
    WHERE t.id = p_token AND t.state = 'issued'
    RETURNING t.offer_id, t.person_key, t.revoked_at INTO offer, person, when_revoked;
    IF FOUND THEN
        PERFORM give_back_place(offer, person);
    END IF;
    RETURN QUERY
        SELECT when_revoked IS NOT NULL, t.state, t.expires_at <= now(), t.revoked_at
        FROM tokens AS t WHERE t.id = p_token;
END
$$;

-- Reverses a redemption: the token goes back to issued where the offer
-- gives it back (its place stays taken), else to reversed (its place is
-- given back). Returns the token's new state, or nothing when the
-- redemption does not exist or was already reversed.
CREATE FUNCTION reverse_redemption(p_redemption uuid)
RETURNS TABLE (token_state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    offer uuid;
    token uuid;
    person bytea;
    new_state text;
BEGIN
    PERFORM 1 FROM offers
    WHERE id = (SELECT r.offer_id FROM redemptions AS r WHERE r.id = p_redemption)
    FOR UPDATE;
    UPDATE redemptions AS r SET reversed_at = now()
    WHERE r.id = p_redemption AND r.reversed_at IS NULL
    RETURNING r.offer_id, r.token_id INTO offer, token;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE tokens AS t
    SET state = CASE WHEN o.reversal_returns_token THEN 'issued' ELSE 'reversed' END
    FROM offers AS o
    WHERE t.id = token AND o.id = offer
    RETURNING t.state, t.person_key INTO new_state, person;
    IF new_state = 'reversed' THEN
        PERFORM give_back_place(offer, person);
    END IF;
    RETURN QUERY SELECT new_state;
END
$$;
