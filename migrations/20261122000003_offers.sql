-- Partners honour offers and confirm their redemptions.
CREATE TABLE partners (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_partner FOREIGN KEY (partner_id) REFERENCES partners (id);

CREATE TABLE offers (
    id                      uuid        PRIMARY KEY,
    title                   text        NOT NULL,
    description             text        NOT NULL DEFAULT '',
    communities             text[]      NOT NULL,
    -- Empty: every sub-status of the eligible communities.
    subsegments             text[]      NOT NULL DEFAULT '{}',
    discount_kind           text        NOT NULL CHECK (discount_kind IN ('percent', 'fixed', 'reward')),
    percent_off             numeric(5, 2),
    amount_minor            bigint,
    currency                text,
    reward                  text,
    starts_at               timestamptz,
    ends_at                 timestamptz,
    status                  text        NOT NULL DEFAULT 'draft'
                                        CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    partner_id              uuid        REFERENCES partners (id),
    total_cap               integer     CHECK (total_cap > 0),
    per_person_limit        integer     CHECK (per_person_limit > 0),
    token_ttl_secs          integer     NOT NULL DEFAULT 900 CHECK (token_ttl_secs BETWEEN 10 AND 2592000),
    reversal_returns_token  boolean     NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT offers_discount CHECK (
        (discount_kind = 'percent' AND percent_off > 0 AND percent_off <= 100)
        OR (discount_kind = 'fixed' AND amount_minor > 0 AND currency ~ '^[A-Z]{3}$')
        OR (discount_kind = 'reward' AND reward <> '')),
    CONSTRAINT offers_window CHECK (starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at)
);
CREATE INDEX offers_status ON offers (status);
CREATE INDEX offers_partner ON offers (partner_id);

-- Token signing keys. The private half is sealed with AES-256-GCM under the
-- key-encryption key; every process signs and verifies with the same keys.
CREATE TABLE signing_keys (
    kid         text        PRIMARY KEY CHECK (kid ~ '^[0-9a-f]{16}$'),
    public_key  bytea       NOT NULL,
    sealed_private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when a newer key takes over signing; the key stays published
    -- while tokens it signed may be live.
    retired_at  timestamptz
);

-- Tokens: the signed JWT's state lives here. A token is outstanding while
-- issued and unexpired; redeemed, revoked and reversed are final (a reversal
-- that gives the token back returns it to issued).
CREATE TABLE tokens (
    id            uuid        PRIMARY KEY,
    offer_id      uuid        NOT NULL REFERENCES offers (id),
    membership_id uuid        REFERENCES memberships (id) ON DELETE SET NULL,
    person_key    bytea,
    community     text        NOT NULL,
    kid           text        NOT NULL REFERENCES signing_keys (kid),
    state         text        NOT NULL DEFAULT 'issued'
                              CHECK (state IN ('issued', 'redeemed', 'reversed', 'revoked')),
    issued_at     timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX tokens_offer_live ON tokens (offer_id, state, expires_at);
CREATE INDEX tokens_offer_person ON tokens (offer_id, person_key);
CREATE INDEX tokens_kid_expiry ON tokens (kid, expires_at);
CREATE INDEX tokens_membership ON tokens (membership_id);

CREATE TABLE redemptions (
    id           uuid        PRIMARY KEY,
    token_id     uuid        NOT NULL REFERENCES tokens (id),
    offer_id     uuid        NOT NULL REFERENCES offers (id),
    partner_id   uuid        REFERENCES partners (id),
    order_ref    text        NOT NULL,
    amount_minor bigint,
    redeemed_at  timestamptz NOT NULL DEFAULT now(),
    reversed_at  timestamptz,
    confirmed_at timestamptz,
    partner_ref  text
);
-- At most one standing redemption per token.
CREATE UNIQUE INDEX redemptions_one_per_token ON redemptions (token_id) WHERE reversed_at IS NULL;
CREATE INDEX redemptions_partner ON redemptions (partner_id, id);
CREATE INDEX redemptions_offer ON redemptions (offer_id);

-- Idempotency keys of redemptions: the first answer, replayed to retries.
CREATE TABLE idempotency_keys (
    api_key_id   text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       smallint,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);
