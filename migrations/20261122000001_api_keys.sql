-- API keys. Only an argon2id hash of each key's secret is kept; the id is the
-- public part of the key (the 12 characters after `ogk_`).
CREATE TABLE api_keys (
    id          text        PRIMARY KEY CHECK (id ~ '^[0-9A-Za-z]{12}$'),
    name        text        NOT NULL DEFAULT '',
    role        text        NOT NULL CHECK (role IN ('admin', 'checkout', 'partner')),
    -- The partner a partner key acts for; the partners table arrives with
    -- offers and adds the foreign key.
    partner_id  uuid,
    secret_hash text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_keys_partner_iff_partner_role
        CHECK ((role = 'partner') = (partner_id IS NOT NULL))
);
