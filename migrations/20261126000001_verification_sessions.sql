-- Hosted verification sessions: a checkout creates one, sends the shopper to
-- its secret URL, and reads the outcome with the key that created it.
CREATE TABLE verification_sessions (
    id              uuid        PRIMARY KEY,
    -- SHA-256 of the secret in the session's URL; the URL is never stored.
    secret_hash     bytea       NOT NULL UNIQUE,
    api_key_id      text        NOT NULL REFERENCES api_keys (id),
    -- The community to verify, or an offer whose communities are offered
    -- as a choice (a single one needs no choice).
    community       text        REFERENCES communities (key),
    offer_id        uuid        REFERENCES offers (id),
    subsegment      text,
    -- NULL: the shopper's browser decides.
    locale          text        CHECK (locale IN ('en', 'fr', 'ru')),
    return_url      text        NOT NULL,
    -- The checkout's reference, as the keyed hash verification attempts keep.
    customer_ref_ix bytea,
    -- `expired` is not stored: an open session past expires_at is expired.
    status          text        NOT NULL DEFAULT 'open'
                                CHECK (status IN ('open', 'verified', 'not_verified', 'canceled')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    integer     NOT NULL CHECK (max_attempts BETWEEN 1 AND 20),
    -- The last attempt, and what a success left: the membership, and with
    -- an offer its token or why none was issued. Tokens and memberships
    -- may be pruned or erased before the session: no foreign keys.
    verification_id uuid,
    membership_id   uuid,
    membership_expires_at timestamptz,
    verified_subsegment text,
    verified_community text,
    token_id        uuid,
    token_problem   text,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    CONSTRAINT verification_sessions_community_or_offer
        CHECK (community IS NOT NULL OR offer_id IS NOT NULL),
    CONSTRAINT verification_sessions_attempts_within_bound
        CHECK (attempts <= max_attempts)
);
CREATE INDEX verification_sessions_expiry ON verification_sessions (expires_at);

-- Origins a checkout key's sessions may return to, beside the settings'.
ALTER TABLE api_keys ADD COLUMN return_origins text[] NOT NULL DEFAULT '{}';
