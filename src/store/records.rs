use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::blind::{AGREEMENTS, BlindIndex, MatchKeys};
use crate::domain::identity::CANON_VERSION;

/// A record ready to write: identity already turned into blind indexes.
#[derive(Debug, Clone)]
pub struct IndexedRecord {
    pub external_id: String,
    pub community: String,
    pub subsegment: Option<String>,
    pub organization: Option<String>,
    pub keys: MatchKeys,
    pub person_key: BlindIndex,
    pub has_birth_date: bool,
    pub valid_from: Option<OffsetDateTime>,
    pub valid_until: Option<OffsetDateTime>,
}

/// What one batch upsert did, by external id.
pub struct Written {
    pub external_id: String,
    pub inserted: bool,
}

fn column<'a, U>(rows: &'a [IndexedRecord], pick: impl Fn(&'a IndexedRecord) -> U) -> Vec<U> {
    rows.iter().map(pick).collect()
}

/// Upserts a batch by (source, external id). A row already written by this
/// import is left alone and not returned: the caller reports it as a
/// duplicate. The batch itself must hold each external id once.
pub async fn upsert_batch(
    conn: &mut PgConnection,
    source: &str,
    import_id: Uuid,
    rows: &[IndexedRecord],
) -> Result<Vec<Written>, sqlx::Error> {
    let written: Vec<(String, bool)> = sqlx::query_as(
        "INSERT INTO verification_records AS r
             (source, external_id, community, subsegment, organization, email_ix, name_dob_ix,
              license_ix, person_key, valid_from, valid_until, last_import, agreement,
              has_birth_date, canon_version)
         SELECT $1, u.external_id, u.community, u.subsegment, u.organization, u.email_ix,
                u.name_dob_ix, u.license_ix,
                -- One person, one key: a record that shares a match key with
                -- a record already held (of any source, or itself before a
                -- re-import) takes that record's person key, so a person
                -- listed with different fields by two rosters is not two
                -- people under a per-person limit.
                -- Three lookups, each by its own index.
                coalesce(
                    (SELECT o.person_key FROM verification_records AS o
                     WHERE o.email_ix = u.email_ix LIMIT 1),
                    (SELECT o.person_key FROM verification_records AS o
                     WHERE o.name_dob_ix = u.name_dob_ix LIMIT 1),
                    (SELECT o.person_key FROM verification_records AS o
                     WHERE o.license_ix = u.license_ix LIMIT 1),
                    u.person_key),
                u.valid_from, u.valid_until, $12,
                ($13::bytea[])[(u.n - 1) * $16 + 1 : u.n * $16], u.has_birth_date, $15
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[],
                     $8::bytea[], $9::bytea[], $10::timestamptz[], $11::timestamptz[],
                     $14::boolean[])
              WITH ORDINALITY AS u(external_id, community, subsegment, organization, email_ix,
                                   name_dob_ix, license_ix, person_key, valid_from,
                                   valid_until, has_birth_date, n)
         ON CONFLICT (source, external_id) DO UPDATE SET
             community = EXCLUDED.community,
             subsegment = EXCLUDED.subsegment,
             organization = EXCLUDED.organization,
             email_ix = EXCLUDED.email_ix,
             name_dob_ix = EXCLUDED.name_dob_ix,
             license_ix = EXCLUDED.license_ix,
             agreement = EXCLUDED.agreement,
             has_birth_date = EXCLUDED.has_birth_date,
             canon_version = EXCLUDED.canon_version,
             person_key = EXCLUDED.person_key,
             valid_from = EXCLUDED.valid_from,
             valid_until = EXCLUDED.valid_until,
             last_import = EXCLUDED.last_import,
             retired_at = NULL,
             updated_at = now()
         WHERE r.last_import <> EXCLUDED.last_import
         RETURNING external_id, xmax = 0",
    )
    .bind(source)
    .bind(column(rows, |r| r.external_id.as_str()))
    .bind(column(rows, |r| r.community.as_str()))
    .bind(column(rows, |r| r.subsegment.as_deref()))
    .bind(column(rows, |r| r.organization.as_deref()))
    .bind(column(rows, |r| r.keys.email.map(|k| k.to_vec())))
    .bind(column(rows, |r| r.keys.name_dob.map(|k| k.to_vec())))
    .bind(column(rows, |r| r.keys.license.map(|k| k.to_vec())))
    .bind(column(rows, |r| r.person_key.to_vec()))
    .bind(column(rows, |r| r.valid_from))
    .bind(column(rows, |r| r.valid_until))
    .bind(import_id)
    .bind(
        rows.iter()
            .flat_map(|r| r.keys.agreement.iter().map(|a| a.map(|k| k.to_vec())))
            .collect::<Vec<_>>(),
    )
    .bind(column(rows, |r| r.has_birth_date))
    .bind(CANON_VERSION)
    .bind(AGREEMENTS.len() as i32)
    .fetch_all(&mut *conn)
    .await?;
    Ok(written
        .into_iter()
        .map(|(external_id, inserted)| Written {
            external_id,
            inserted,
        })
        .collect())
}

/// Marks the source's records with these external ids as seen by this
/// import, so a replace import does not retire a record for a bad row.
pub async fn keep_from_retirement(
    conn: &mut PgConnection,
    source: &str,
    import_id: Uuid,
    external_ids: &[String],
) -> Result<(), sqlx::Error> {
    if external_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE verification_records SET last_import = $2
         WHERE source = $1 AND external_id = ANY ($3) AND last_import <> $2",
    )
    .bind(source)
    .bind(import_id)
    .bind(external_ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub struct Retired {
    pub records: i64,
    pub memberships_ended: i64,
}

/// Retires the source's records this import did not write, and ends the
/// memberships that rest on them.
pub async fn retire_missing(
    conn: &mut PgConnection,
    source: &str,
    import_id: Uuid,
) -> Result<Retired, sqlx::Error> {
    let (records, memberships_ended): (i64, i64) = sqlx::query_as(
        "WITH retired AS (
             UPDATE verification_records SET retired_at = now(), updated_at = now()
             WHERE source = $1 AND last_import <> $2 AND retired_at IS NULL
             RETURNING id),
         ended AS (
             UPDATE memberships AS m SET expires_at = now()
             FROM retired
             WHERE m.record_id = retired.id AND (m.expires_at IS NULL OR m.expires_at > now())
             RETURNING m.id)
         SELECT (SELECT count(*) FROM retired), (SELECT count(*) FROM ended)",
    )
    .bind(source)
    .bind(import_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Retired {
        records,
        memberships_ended,
    })
}

/// Person keys of every record, live or not, that any of the keys hits.
pub async fn person_keys_matching(
    db: impl PgExecutor<'_>,
    keys: &MatchKeys,
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT person_key FROM verification_records
         WHERE email_ix = $1 OR name_dob_ix = $2 OR license_ix = $3",
    )
    .bind(keys.email.map(|k| k.to_vec()))
    .bind(keys.name_dob.map(|k| k.to_vec()))
    .bind(keys.license.map(|k| k.to_vec()))
    .fetch_all(db)
    .await
}

/// Live records per source whose indexes were made under an older
/// canonicalisation version than this build's.
pub async fn outdated(db: impl PgExecutor<'_>) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT source, count(*) FROM verification_records
         WHERE canon_version < $1 AND retired_at IS NULL
         GROUP BY source ORDER BY source",
    )
    .bind(CANON_VERSION)
    .fetch_all(db)
    .await
}
