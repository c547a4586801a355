-- Trust: every identity field agrees with the record, canonical forms
-- carry a version, per-person limits outlive erasure without naming
-- anyone, and guessing is slowed over weeks, not only minutes.

-- Field agreements (see `AGREEMENTS` in src/domain/blind.rs): each field a
-- record holds beside a match key, as a blind index bound to that key, in a
-- fixed order. Whether the record holds a birth date, for age gates. The
-- canonicalisation version its indexes were made with: records of an older
-- version are reported until they are imported again.
ALTER TABLE verification_records
    ADD COLUMN agreement      bytea[],
    ADD COLUMN has_birth_date boolean  NOT NULL DEFAULT false,
    ADD COLUMN canon_version  smallint NOT NULL DEFAULT 1;
UPDATE verification_records SET has_birth_date = name_dob_ix IS NOT NULL;

-- A token's place under a per-person limit is held by a key of the person
-- for that offer alone: SHA-256 of a secret derived from the blind-index
-- key (never stored in the database; each call passes it), the offer and
-- the person's blind index. It links nothing across offers, cannot be
-- joined to a record's person key by anyone without the secret, and
-- outlives an erasure of the person while the offer is live, so an erased
-- person who verifies again finds their places still taken.
CREATE FUNCTION offer_place_key(p_offer uuid, p_person bytea, p_secret bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(p_secret || uuid_send(p_offer) || p_person)
$$;

-- Tokens keep their legacy `person_key` until `serve` (or `migrate`), which
-- holds the secret, turns each into a place key and recounts the per-person
-- places of their offers (src/usecases/places.rs).
DROP INDEX tokens_offer_person;
ALTER TABLE tokens ADD COLUMN place_key bytea;
CREATE INDEX tokens_offer_place ON tokens (offer_id, place_key);
CREATE INDEX tokens_legacy_person ON tokens (offer_id) WHERE person_key IS NOT NULL;
DELETE FROM offer_person_places;
ALTER TABLE offer_person_places RENAME COLUMN person_key TO place_key;

-- Gives back a place held by a token of the offer (`p_place`: the token's
-- place key). The caller holds the offer's row lock.
DROP FUNCTION give_back_place(uuid, bytea);
CREATE FUNCTION give_back_place(p_offer uuid, p_place bytea) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE offers SET places_taken = greatest(places_taken - 1, 0) WHERE id = p_offer;
    IF p_place IS NOT NULL THEN
        UPDATE offer_person_places SET taken = greatest(taken - 1, 0)
        WHERE offer_id = p_offer AND place_key = p_place;
    END IF;
END
$$;

-- Marks the offer's issued tokens that have expired as `expired` and gives
-- their places back; with `p_place`, only those holding that place key.
-- Returns how many.
DROP FUNCTION reclaim_expired_places(uuid, bytea);
CREATE FUNCTION reclaim_expired_places(p_offer uuid, p_place bytea) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    freed integer;
    place bytea := p_place;
BEGIN
    -- Most refusals at a full cap find nothing to reclaim: look first,
    -- without a lock, so they do not queue on the offer's row.
    IF NOT EXISTS (
        SELECT 1 FROM tokens
        WHERE offer_id = p_offer AND state = 'issued' AND expires_at <= now()
          AND (place IS NULL OR place_key = place)) THEN
        RETURN 0;
    END IF;
    PERFORM 1 FROM offers WHERE id = p_offer FOR UPDATE;
    WITH expired AS (
        UPDATE tokens SET state = 'expired'
        WHERE offer_id = p_offer AND state = 'issued' AND expires_at <= now()
          AND (place IS NULL OR place_key = place)
        RETURNING place_key),
    per_person AS (
        UPDATE offer_person_places AS p SET taken = greatest(p.taken - e.n, 0)
        FROM (SELECT place_key, count(*) AS n FROM expired
              WHERE place_key IS NOT NULL GROUP BY place_key) AS e
        WHERE p.offer_id = p_offer AND p.place_key = e.place_key)
    SELECT count(*) INTO freed FROM expired;
    IF freed > 0 THEN
        UPDATE offers SET places_taken = greatest(places_taken - freed, 0) WHERE id = p_offer;
    END IF;
    RETURN freed;
END
$$;

CREATE OR REPLACE FUNCTION recount_places(p_offer uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM offers WHERE id = p_offer FOR UPDATE;
    UPDATE offers SET places_taken = (
        SELECT count(*) FROM tokens
        WHERE offer_id = p_offer AND state IN ('issued', 'redeemed'))
    WHERE id = p_offer;
    DELETE FROM offer_person_places WHERE offer_id = p_offer;
    INSERT INTO offer_person_places (offer_id, place_key, taken)
    SELECT p_offer, place_key, count(*) FROM tokens
    WHERE offer_id = p_offer AND state IN ('issued', 'redeemed') AND place_key IS NOT NULL
    GROUP BY place_key;
END
$$;

DROP FUNCTION take_place(uuid, uuid, uuid, bytea, text, text, text);
CREATE FUNCTION take_place(
    p_token uuid, p_offer uuid, p_membership uuid, p_person bytea,
    p_community text, p_subsegment text, p_kid text, p_secret bytea
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    offer offers%ROWTYPE;
    place bytea := offer_place_key(p_offer, p_person, p_secret);
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
            INSERT INTO offer_person_places AS p (offer_id, place_key, taken)
            VALUES (p_offer, place, 1)
            ON CONFLICT (offer_id, place_key) DO UPDATE SET taken = p.taken + 1
                WHERE p.taken < offer.per_person_limit;
            EXIT WHEN FOUND;
            IF pass = 2 OR reclaim_expired_places(p_offer, place) = 0 THEN
                PERFORM give_back_place(p_offer, NULL);
                RETURN 'person_limit_reached';
            END IF;
        END LOOP;
    END IF;

    INSERT INTO tokens (id, offer_id, membership_id, place_key, community, kid, expires_at)
    VALUES (p_token, p_offer, p_membership, place, p_community, p_kid,
            now() + make_interval(secs => offer.token_ttl_secs));
    RETURN 'issued';
END
$$;

CREATE OR REPLACE FUNCTION revoke_token(p_token uuid)
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
    RETURNING t.offer_id, t.place_key, t.revoked_at INTO offer, person, when_revoked;
    IF FOUND THEN
        PERFORM give_back_place(offer, person);
    END IF;
    RETURN QUERY
        SELECT when_revoked IS NOT NULL, t.state, t.expires_at <= now(), t.revoked_at
        FROM tokens AS t WHERE t.id = p_token;
END
$$;

CREATE OR REPLACE FUNCTION reverse_redemption(p_redemption uuid)
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
    RETURNING t.state, t.place_key INTO new_state, person;
    IF new_state = 'reversed' THEN
        PERFORM give_back_place(offer, person);
    END IF;
    RETURN QUERY SELECT new_state;
END
$$;

-- Whether an attempt may go ahead: NULL when no subject is held back, else
-- the seconds until the longest hold ends. Two holds:
--   * the window: a subject with `p_limits` failures within `p_window` waits
--     until its oldest one leaves the window (every subject);
--   * the back-off, for the identity components (`p_exact`) only: with f
--     failures within the lookback and f >= the free failures, the next
--     attempt waits base * 2^(f - free) seconds (at most the cap) after the
--     last failure. `p_backoff` = {lookback, free failures, base, cap}, in
--     seconds.
-- Run inside the attempt's transaction: the exact subjects are locked first,
-- in a fixed order, and stay locked until the attempt's outcome is
-- committed, so their limits hold exactly however many processes check them
-- at once. The others (the client address, and the API key every attempt of
-- a checkout shares) are not locked, so one busy key does not serialise all
-- verifications; their counts can overshoot by the attempts in flight on
-- that subject at that instant.
DROP FUNCTION check_verification_limits(bytea[], integer[], boolean[], interval);
CREATE FUNCTION check_verification_limits(
    p_subjects bytea[],
    p_limits   integer[],
    p_exact    boolean[],
    p_window   interval,
    p_backoff  double precision[]
) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    wait double precision;
    held double precision;
    lookback interval := make_interval(secs => p_backoff[1]);
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key)
    FROM (
        SELECT DISTINCT ('x' || encode(substr(s.subject, 1, 8), 'hex'))::bit(64)::bigint AS lock_key
        FROM unnest(p_subjects, p_exact) AS s(subject, exact)
        WHERE s.exact
        ORDER BY 1
    ) AS ordered;

    SELECT max(extract(epoch FROM counted.oldest + p_window - now()))
    INTO wait
    FROM (
        SELECT s.max_failures, count(v.subject) AS failures, min(v.struck_at) AS oldest
        FROM unnest(p_subjects, p_limits) AS s(subject, max_failures)
        LEFT JOIN verification_strikes AS v
            ON v.subject = s.subject AND v.struck_at > now() - p_window
        GROUP BY s.subject, s.max_failures
    ) AS counted
    WHERE counted.failures >= counted.max_failures;

    SELECT max(extract(epoch FROM counted.latest - now())
               + least(p_backoff[3] * power(2::double precision,
                                            least(counted.failures - p_backoff[2], 60)),
                       p_backoff[4]))
    INTO held
    FROM (
        SELECT count(*) AS failures, max(v.struck_at) AS latest
        FROM unnest(p_subjects, p_exact) AS s(subject, exact)
        JOIN verification_strikes AS v
            ON v.subject = s.subject AND v.struck_at > now() - lookback
        WHERE s.exact
        GROUP BY s.subject
    ) AS counted
    WHERE counted.failures >= p_backoff[2];

    IF held > 0 AND (wait IS NULL OR held > wait) THEN
        wait := held;
    END IF;
    RETURN CASE WHEN wait IS NULL THEN NULL ELSE greatest(wait, 0.001) END;
END
$$;

DROP FUNCTION verify_consumer(text, text, bytea, uuid, text, text, bytea, bytea, bytea,
    bytea[], integer[], boolean[], double precision, boolean, bytea, bytea, text[], integer[],
    integer, uuid, uuid, text);

CREATE FUNCTION verify_consumer(
    p_api_key text, p_key text, p_request_hash bytea,
    p_attempt uuid, p_community text, p_subsegment text,
    p_email bytea, p_name_dob bytea, p_license bytea, p_agreement bytea[],
    p_subjects bytea[], p_limits integer[], p_exact boolean[], p_window_secs double precision,
    p_backoff double precision[],
    p_age_ok boolean, p_age_gated boolean, p_claimed_person bytea, p_customer_ref bytea,
    p_period_subsegments text[], p_period_days integer[], p_default_days integer,
    p_offer uuid, p_token uuid, p_kid text, p_place_secret bytea, p_canon_version smallint
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
                                            make_interval(secs => p_window_secs), p_backoff);
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
      -- Every other field given agrees with the record wherever it holds it.
      AND NOT EXISTS (SELECT 1 FROM unnest(v.agreement, p_agreement) AS a(held, given)
                      WHERE a.held <> a.given)
      AND (NOT p_age_gated OR v.has_birth_date)
      -- Records indexed under an older canonicalisation hold no field
      -- agreements yet: they verify nobody until imported again.
      AND v.canon_version = p_canon_version
    ORDER BY v.valid_until DESC NULLS FIRST
    LIMIT 1;

    IF NOT FOUND OR NOT p_age_ok THEN
        result := 'not_verified';
        INSERT INTO verification_attempts
            (id, community, subsegment, outcome, person_key, offer_id, customer_ref_ix, api_key_id)
        VALUES (p_attempt, p_community, p_subsegment, 'not_verified', p_claimed_person, p_offer,
                p_customer_ref, p_api_key);
        -- Identity subjects keep their strikes for the back-off lookback,
        -- the others for the window.
        DELETE FROM verification_strikes AS v
        USING unnest(p_subjects, p_exact) AS s(subject, exact)
        WHERE v.subject = s.subject
          AND v.struck_at <= now() - make_interval(secs => CASE WHEN s.exact
                THEN greatest(p_window_secs, p_backoff[1]) ELSE p_window_secs END);
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
                                       rec.subsegment, p_kid, p_place_secret);
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

-- POST /v1/tokens, as before, with the secret of the place keys.
DROP FUNCTION issue_token(text, text, bytea, uuid, uuid, uuid, text);
CREATE FUNCTION issue_token(
    p_api_key text, p_key text, p_request_hash bytea,
    p_token uuid, p_offer uuid, p_membership uuid, p_kid text, p_place_secret bytea
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
                             member.community, member.subsegment, p_kid, p_place_secret);
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
