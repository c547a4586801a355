-- Revoking a signing key revokes its issued tokens with it and gives their
-- places back, so the members who held them can be issued new tokens (a
-- per-person limit would otherwise hold them out until the old ones
-- expired). Offer by offer, each offer's row locked first (one lock order).
-- Returns how many tokens it revoked.
CREATE FUNCTION revoke_tokens_of_key(p_kid text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    offer uuid;
    freed integer;
    total integer := 0;
BEGIN
    FOR offer IN
        SELECT DISTINCT t.offer_id FROM tokens AS t
        WHERE t.kid = p_kid AND t.state = 'issued' ORDER BY 1
    LOOP
        PERFORM 1 FROM offers WHERE id = offer FOR UPDATE;
        WITH gone AS (
            UPDATE tokens SET state = 'revoked', revoked_at = now()
            WHERE offer_id = offer AND kid = p_kid AND state = 'issued'
            RETURNING place_key),
        per_person AS (
            UPDATE offer_person_places AS p SET taken = greatest(p.taken - g.n, 0)
            FROM (SELECT place_key, count(*) AS n FROM gone
                  WHERE place_key IS NOT NULL GROUP BY place_key) AS g
            WHERE p.offer_id = offer AND p.place_key = g.place_key)
        SELECT count(*) INTO freed FROM gone;
        UPDATE offers SET places_taken = greatest(places_taken - freed, 0) WHERE id = offer;
        total := total + freed;
    END LOOP;
    RETURN total;
END
$$;
