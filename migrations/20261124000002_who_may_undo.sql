-- Who may undo what, and signing keys that can be revoked.

-- A reversal records who made it and why. Only the key that redeemed, or an
-- admin, may reverse; once the partner has confirmed, only an admin, with a
-- reason the partner sees.
ALTER TABLE redemptions
    ADD COLUMN reversed_by      text,
    ADD COLUMN reversed_by_role text CHECK (reversed_by_role IN ('admin', 'checkout')),
    ADD COLUMN reversal_reason  text;

-- A revoked signing key is out of the JWKS, signs nothing new and verifies
-- nothing: its tokens are refused at redemption.
ALTER TABLE signing_keys ADD COLUMN revoked_at timestamptz;

-- Reverses a redemption for a caller: `p_api_key` is the caller's key,
-- `p_admin` whether it is an admin's. Outcomes:
--   `reversed`           done; `token_state` is the token's new state
--   `not_found`          no such redemption, or one the caller may not see
--                        (another key's, for a checkout)
--   `already_reversed`   reversed before (`reversed_at`)
--   `already_confirmed`  the partner confirmed it (`confirmed_at`): only an
--                        admin may reverse it now
--   `reason_required`    an admin reversing a confirmed redemption gave no
--                        reason
-- The token goes back to issued where the offer gives it back (its place
-- stays taken), else to reversed (its place is given back).
--
-- Confirmation and reversal race on the redemption's row: each is one
-- conditional UPDATE, and the second re-reads the row the first committed,
-- so exactly one order wins. A confirmation after a reversal finds it
-- reversed; a checkout's reversal after a confirmation finds it confirmed.
DROP FUNCTION reverse_redemption(uuid);
CREATE FUNCTION reverse_redemption(
    p_redemption uuid, p_api_key text, p_admin boolean, p_reason text
) RETURNS TABLE (
    outcome text, token_state text, reversed_at timestamptz, confirmed_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    offer uuid;
    token uuid;
    person bytea;
    new_state text;
    when_reversed timestamptz;
    found_row redemptions%ROWTYPE;
BEGIN
    -- Only a caller who may see the redemption locks its offer (every
    -- change of places locks the offer first).
    SELECT r.offer_id INTO offer FROM redemptions AS r
    WHERE r.id = p_redemption AND (p_admin OR r.api_key_id = p_api_key);
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    PERFORM 1 FROM offers WHERE id = offer FOR UPDATE;

    UPDATE redemptions AS r
    SET reversed_at = now(), reversed_by = p_api_key,
        reversed_by_role = CASE WHEN p_admin THEN 'admin' ELSE 'checkout' END,
        reversal_reason = p_reason
    WHERE r.id = p_redemption AND r.reversed_at IS NULL
      AND (p_admin OR r.api_key_id = p_api_key)
      AND (r.confirmed_at IS NULL OR (p_admin AND p_reason IS NOT NULL))
    RETURNING r.token_id, r.reversed_at INTO token, when_reversed;
    IF NOT FOUND THEN
        -- A fresh snapshot: it sees what a concurrent call committed.
        SELECT * INTO found_row FROM redemptions AS r WHERE r.id = p_redemption;
        RETURN QUERY SELECT
            CASE WHEN found_row.id IS NULL THEN 'not_found'
                 WHEN found_row.reversed_at IS NOT NULL THEN 'already_reversed'
                 WHEN NOT p_admin THEN 'already_confirmed'
                 ELSE 'reason_required' END,
            NULL::text, found_row.reversed_at, found_row.confirmed_at;
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
    RETURN QUERY SELECT 'reversed'::text, new_state, when_reversed, NULL::timestamptz;
END
$$;

-- POST /v1/redemptions in one call: as before, and a token whose signing
-- key was revoked is refused (`key_revoked`) by every process at once,
-- whatever key caches the processes hold.
CREATE OR REPLACE FUNCTION redeem_token(
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
    key_revoked boolean;
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
          AND NOT EXISTS (SELECT 1 FROM signing_keys AS s
                          WHERE s.kid = tokens.kid AND s.revoked_at IS NOT NULL)
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
        SELECT t.state, t.expires_at > now(), s.revoked_at IS NOT NULL
        INTO current_state, live, key_revoked
        FROM tokens AS t JOIN signing_keys AS s ON s.kid = t.kid
        WHERE t.id = p_token;
        result := CASE
            WHEN current_state IS NULL THEN 'unknown_token'
            WHEN key_revoked THEN 'key_revoked'
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
