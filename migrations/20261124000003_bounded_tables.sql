-- Retention: the sweep inside `serve` deletes rows that only record the
-- past, oldest first, a batch at a time. These indexes let each batch find
-- its rows by age instead of scanning the table.
CREATE INDEX verification_strikes_struck_at ON verification_strikes (struck_at);
CREATE INDEX verification_attempts_attempted_at ON verification_attempts (attempted_at);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
-- Pruned tokens take the idempotent answers that name them along.
CREATE INDEX idempotency_keys_token ON idempotency_keys (token_id) WHERE token_id IS NOT NULL;
CREATE INDEX tokens_expiry ON tokens (expires_at);
-- A token with any redemption, reversed or not, is kept with it.
CREATE INDEX redemptions_token ON redemptions (token_id);
