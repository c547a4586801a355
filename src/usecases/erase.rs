//! Forgetting a person named by identity fields.

use crate::domain::Invalid;
use crate::domain::blind::{BlindIndexer, LimitSubject};
use crate::domain::identity::{Identity, RawIdentity};
use crate::store::{records, verifications};

use super::verify::{VerifyError, person_field};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    pub memberships_removed: i64,
    pub attempts_unlinked: i64,
    pub tokens_unlinked: i64,
}

/// Forgets a person named by identity fields: every person key the fields
/// or their records stand for.
pub async fn erase(
    db: &sqlx::PgPool,
    indexer: &BlindIndexer,
    person: &RawIdentity,
) -> Result<Erasure, VerifyError> {
    let identity = Identity::parse(person)
        .map_err(|errors| VerifyError::Invalid(errors.into_iter().map(person_field).collect()))?;
    if !identity.is_matchable() {
        return Err(VerifyError::Invalid(vec![Invalid::new(
            "person",
            "needs an email, or given_name, family_name and birth_date, or license_number and family_name",
        )]));
    }
    let mut person_keys: Vec<Vec<u8>> = indexer
        .person_keys(&identity)
        .into_iter()
        .map(|k| k.to_vec())
        .collect();
    let mut tx = db.begin().await?;
    for key in records::person_keys_matching(&mut *tx, &indexer.match_keys(&identity)).await? {
        if !person_keys.contains(&key) {
            person_keys.push(key);
        }
    }
    let subjects: Vec<Vec<u8>> = indexer
        .identity_subjects(&identity)
        .into_iter()
        .filter(|(kind, _)| matches!(kind, LimitSubject::Email | LimitSubject::License))
        .map(|(_, subject)| subject.to_vec())
        .collect();
    let erased = verifications::erase_people(&mut tx, &person_keys, &subjects).await?;
    tx.commit().await?;
    Ok(Erasure {
        memberships_removed: erased.memberships,
        attempts_unlinked: erased.attempts,
        tokens_unlinked: erased.tokens,
    })
}
