use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct OfferStats {
    pub verifications_tried: i64,
    pub verifications_passed: i64,
    pub tokens_issued: i64,
    pub tokens_outstanding: i64,
    pub tokens_expired: i64,
    pub tokens_redeemed: i64,
    pub redemptions_reversed: i64,
    pub tokens_revoked: i64,
    pub redemptions_confirmed: i64,
    /// Redeemed tokens over issued tokens.
    pub redemption_rate: Option<f64>,
    /// Median seconds from a token's issue to its redemption.
    pub median_seconds_to_redeem: Option<f64>,
}

pub async fn for_offer(db: impl PgExecutor<'_>, offer_id: Uuid) -> Result<OfferStats, sqlx::Error> {
    sqlx::query_as(
        "WITH attempts AS (
             SELECT count(*) AS tried, count(*) FILTER (WHERE outcome = 'verified') AS passed
             FROM verification_attempts WHERE offer_id = $1),
         toks AS (
             SELECT count(*) AS issued,
                    count(*) FILTER (WHERE state = 'issued' AND expires_at > now()) AS outstanding,
                    count(*) FILTER (WHERE state = 'expired' OR (state = 'issued' AND expires_at <= now())) AS expired,
                    count(*) FILTER (WHERE state = 'redeemed') AS redeemed,
                    count(*) FILTER (WHERE state = 'revoked') AS revoked
             FROM tokens WHERE offer_id = $1),
         reds AS (
             SELECT count(*) FILTER (WHERE r.confirmed_at IS NOT NULL AND r.reversed_at IS NULL) AS confirmed,
                    count(*) FILTER (WHERE r.reversed_at IS NOT NULL) AS reversed,
                    percentile_cont(0.5) WITHIN GROUP (
                        ORDER BY extract(epoch FROM r.redeemed_at - t.issued_at)) AS median
             FROM redemptions AS r JOIN tokens AS t ON t.id = r.token_id
             WHERE r.offer_id = $1)
         SELECT attempts.tried AS verifications_tried, attempts.passed AS verifications_passed,
                toks.issued AS tokens_issued, toks.outstanding AS tokens_outstanding,
                toks.expired AS tokens_expired, toks.redeemed AS tokens_redeemed,
                reds.reversed AS redemptions_reversed, toks.revoked AS tokens_revoked,
                reds.confirmed AS redemptions_confirmed,
                CASE WHEN toks.issued = 0 THEN NULL
                     ELSE toks.redeemed::float8 / toks.issued END AS redemption_rate,
                reds.median::float8 AS median_seconds_to_redeem
         FROM attempts, toks, reds",
    )
    .bind(offer_id)
    .fetch_one(db)
    .await
}
