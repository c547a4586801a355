-- Communities a consumer can be verified as a member of.
CREATE TABLE communities (
    key                 text        PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{1,62}$'),
    display_name        text        NOT NULL,
    -- Allowed sub-statuses, e.g. military: active_duty, veteran, ...
    subsegments         text[]      NOT NULL DEFAULT '{}',
    -- Identity fields a verification request must carry.
    required_fields     text[]      NOT NULL,
    -- How long a success lasts before re-verification; NULL: until the
    -- record ends.
    reverify_after_days integer     CHECK (reverify_after_days > 0),
    -- Per sub-status overrides of reverify_after_days ({"veteran": null}).
    subsegment_reverify jsonb       NOT NULL DEFAULT '{}',
    -- Age gate from the birth date given at verification (senior: 65).
    min_age             integer     CHECK (min_age BETWEEN 1 AND 130),
    builtin             boolean     NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

INSERT INTO communities (key, display_name, subsegments, required_fields, reverify_after_days, subsegment_reverify, min_age, builtin) VALUES
    ('student', 'Students', '{high_school,college}', '{given_name,family_name,birth_date}', 365, '{}', NULL, true),
    ('teacher', 'Teachers', '{}', '{given_name,family_name,email}', 365, '{}', NULL, true),
    ('nurse', 'Nurses', '{}', '{family_name,license_number}', NULL, '{}', NULL, true),
    ('military', 'Military', '{active_duty,veteran,reservist,military_family}', '{given_name,family_name,birth_date}', 365, '{"veteran": null}', NULL, true),
    ('first_responder', 'First responders', '{police,emt,firefighter}', '{given_name,family_name,birth_date}', 365, '{}', NULL, true),
    ('senior', 'Seniors', '{}', '{given_name,family_name,birth_date}', NULL, '{}', 65, true);

-- One authoritative row per (source, external id). Identity fields are kept
-- only as 16-byte HMAC-SHA-256 blind indexes: a dump reveals nobody.
CREATE TABLE verification_records (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text        NOT NULL,
    external_id     text        NOT NULL,
    community       text        NOT NULL REFERENCES communities (key),
    subsegment      text,
    organization    text,
    -- Match keys: the e-mail; given name + family name + birth date;
    -- licence number + family name.
    email_ix        bytea,
    name_dob_ix     bytea,
    license_ix      bytea,
    -- Blind index of the person, shared by every record of the same person.
    person_key      bytea       NOT NULL,
    valid_from      timestamptz,
    valid_until     timestamptz,
    retired_at      timestamptz,
    -- The import that last wrote the row (replace mode retires the others).
    last_import     uuid        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT verification_records_source_external_id UNIQUE (source, external_id),
    CONSTRAINT verification_records_matchable
        CHECK (email_ix IS NOT NULL OR name_dob_ix IS NOT NULL OR license_ix IS NOT NULL)
);
CREATE INDEX verification_records_email ON verification_records (email_ix) WHERE email_ix IS NOT NULL;
CREATE INDEX verification_records_name_dob ON verification_records (name_dob_ix) WHERE name_dob_ix IS NOT NULL;
CREATE INDEX verification_records_license ON verification_records (license_ix) WHERE license_ix IS NOT NULL;
CREATE INDEX verification_records_person ON verification_records (person_key);

-- What a success leaves behind: "verify once" until expires_at.
CREATE TABLE memberships (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    person_key  bytea       NOT NULL,
    community   text        NOT NULL REFERENCES communities (key),
    subsegment  text,
    record_id   bigint      REFERENCES verification_records (id) ON DELETE SET NULL,
    verified_at timestamptz NOT NULL,
    -- NULL: no end (a veteran on an open-ended record).
    expires_at  timestamptz,
    CONSTRAINT memberships_person_community UNIQUE (person_key, community)
);
CREATE INDEX memberships_record ON memberships (record_id);

-- Every attempt, with nothing readable. Erasure unlinks person_key.
CREATE TABLE verification_attempts (
    id            uuid        PRIMARY KEY,
    community     text        NOT NULL,
    subsegment    text,
    outcome       text        NOT NULL CHECK (outcome IN ('verified', 'not_verified')),
    person_key    bytea,
    membership_id uuid,
    offer_id      uuid,
    customer_ref_ix bytea,
    api_key_id    text,
    attempted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX verification_attempts_person ON verification_attempts (person_key) WHERE person_key IS NOT NULL;
CREATE INDEX verification_attempts_community ON verification_attempts (community, attempted_at);

-- Sliding-window log of failed attempts, one row per rate-limit subject of
-- each failure. Successes write nothing here.
CREATE TABLE verification_strikes (
    subject    bytea       NOT NULL,
    attempt_id uuid        NOT NULL,
    struck_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX verification_strikes_subject ON verification_strikes (subject, struck_at);

-- Whether an attempt may go ahead: NULL when no subject has reached its
-- limit of failures within the window, else the seconds until the subject
-- at its limit frees a place. Run inside the attempt's transaction: the
-- subjects marked exact (the identity components) are locked first, in a
-- fixed order, and stay locked until the attempt's outcome is committed, so
-- their limits hold exactly however many processes check them at once. The
-- others (the client address, and the API key every attempt of a checkout
-- shares) are not locked, so one busy key does not serialise all
-- verifications; their counts can overshoot by the attempts in flight on
-- that subject at that instant.
CREATE FUNCTION check_verification_limits(
    p_subjects bytea[],
    p_limits   integer[],
    p_exact    boolean[],
    p_window   interval
) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    wait double precision;
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

    RETURN CASE WHEN wait IS NULL THEN NULL ELSE greatest(wait, 0.001) END;
END
$$;
