//! Blind indexes: HMAC-SHA-256 under the server's key, truncated to 16
//! bytes, of canonical identity values. Equal inputs give equal indexes, so
//! records can be matched; without the key, an index reveals nothing.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::Date;

use super::identity::{Identity, IdentityField};

pub const INDEX_LEN: usize = 16;
pub type BlindIndex = [u8; INDEX_LEN];

/// Separates the parts of one index; cannot occur in canonical text.
const SEPARATOR: &[u8] = &[0x1f];

/// Holds the HMAC already keyed; each index starts from a clone of it.
pub struct BlindIndexer {
    keyed: Hmac<Sha256>,
}

#[derive(Debug, thiserror::Error)]
#[error("the blind index key must be 32 bytes written as 64 hex digits")]
pub struct InvalidIndexKey;

/// The blind indexes a record is matched by, and the field agreements that
/// check every other field it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchKeys {
    pub email: Option<BlindIndex>,
    pub name_dob: Option<BlindIndex>,
    pub license: Option<BlindIndex>,
    /// One index per (match key, other field) in [`AGREEMENTS`] order, where
    /// both are known.
    pub agreement: [Option<BlindIndex>; AGREEMENTS.len()],
}

/// The match keys: e-mail; given name + family name + birth date; licence
/// number + family name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKey {
    Email,
    NameDob,
    License,
}

/// The fields a match key does not cover, each checked bound to that key:
/// a record found by e-mail must also agree on the names, birth date and
/// licence it holds, and so on. An agreement index covers the match key's
/// values and the field's value together, so it is as rare as the person:
/// a dump cannot group records by family name or birth date, as indexes of
/// single fields would let it. Matching keys are equal (the record match
/// requires it), so equal agreements mean equal fields.
pub const AGREEMENTS: [(MatchKey, IdentityField); 12] = [
    (MatchKey::Email, IdentityField::GivenName),
    (MatchKey::Email, IdentityField::FamilyName),
    (MatchKey::Email, IdentityField::BirthDate),
    (MatchKey::Email, IdentityField::LicenseNumber),
    (MatchKey::NameDob, IdentityField::Email),
    (MatchKey::NameDob, IdentityField::LicenseNumber),
    (MatchKey::License, IdentityField::Email),
    (MatchKey::License, IdentityField::GivenName),
    (MatchKey::License, IdentityField::BirthDate),
    (MatchKey::Email, IdentityField::Organization),
    (MatchKey::NameDob, IdentityField::Organization),
    (MatchKey::License, IdentityField::Organization),
];

/// What failed attempts are counted against, each on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSubject {
    Email,
    NamePair,
    License,
    /// The family name of a licence attempt: a guesser who knows a nurse's
    /// name tries licence numbers, each a subject of its own, so the name
    /// they guess for is limited too.
    LicenseFamily,
    ClientAddress,
    ApiKey,
}

impl MatchKey {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKey::Email => "email",
            MatchKey::NameDob => "name-dob",
            MatchKey::License => "license",
        }
    }
}

impl LimitSubject {
    /// The identity components: limited exactly, since guessing one field
    /// of a known person is what the limit is for.
    pub fn is_identity(self) -> bool {
        matches!(
            self,
            LimitSubject::Email
                | LimitSubject::NamePair
                | LimitSubject::License
                | LimitSubject::LicenseFamily
        )
    }
}

fn iso_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

impl BlindIndexer {
    pub fn from_hex(key_hex: &str) -> Result<Self, InvalidIndexKey> {
        let bytes = hex::decode(key_hex).map_err(|_| InvalidIndexKey)?;
        if bytes.len() != 32 {
            return Err(InvalidIndexKey);
        }
        let keyed =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&bytes).map_err(|_| InvalidIndexKey)?;
        Ok(BlindIndexer { keyed })
    }

    /// The index of `parts` for one purpose; the purpose keeps, say, an
    /// e-mail index from ever equalling a licence index of the same text.
    pub fn index(&self, purpose: &str, parts: &[&str]) -> BlindIndex {
        let mut mac = self.keyed.clone();
        mac.update(purpose.as_bytes());
        for part in parts {
            mac.update(SEPARATOR);
            mac.update(part.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        let mut index = [0u8; INDEX_LEN];
        index.copy_from_slice(&digest[..INDEX_LEN]);
        index
    }

    /// The secret of the place keys that hold places under per-person
    /// limits (`offer_place_key` in the migrations): derived from the key,
    /// never stored, so a place key cannot be joined to a record's person
    /// key by anyone who has only the database.
    pub fn place_secret(&self) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(b"place-key");
        mac.finalize().into_bytes().into()
    }

    pub fn match_keys(&self, identity: &Identity) -> MatchKeys {
        let born = identity.birth_date.map(iso_date);
        let field = |field: IdentityField| -> Option<&str> {
            match field {
                IdentityField::Email => identity.email.as_deref(),
                IdentityField::GivenName => identity.given_name.as_deref(),
                IdentityField::FamilyName => identity.family_name.as_deref(),
                IdentityField::BirthDate => born.as_deref(),
                IdentityField::LicenseNumber => identity.license_number.as_deref(),
                IdentityField::Organization => identity.organization.as_deref(),
            }
        };
        let key_values = |key: MatchKey| -> Option<Vec<&str>> {
            let fields: &[IdentityField] = match key {
                MatchKey::Email => &[IdentityField::Email],
                MatchKey::NameDob => &[
                    IdentityField::GivenName,
                    IdentityField::FamilyName,
                    IdentityField::BirthDate,
                ],
                MatchKey::License => &[IdentityField::LicenseNumber, IdentityField::FamilyName],
            };
            fields.iter().map(|f| field(*f)).collect()
        };
        let agreement = AGREEMENTS.map(|(key, other)| {
            let mut parts = key_values(key)?;
            parts.push(field(other)?);
            let purpose = format!("agree:{}:{other}", key.as_str());
            Some(self.index(&purpose, &parts))
        });
        MatchKeys {
            email: key_values(MatchKey::Email).map(|v| self.index("match:email", &v)),
            name_dob: key_values(MatchKey::NameDob).map(|v| self.index("match:name-dob", &v)),
            license: key_values(MatchKey::License).map(|v| self.index("match:license", &v)),
            agreement,
        }
    }

    /// The person key: from name and birth date when known (so one person
    /// listed by several sources is one person), else the e-mail, else the
    /// licence.
    pub fn person_key(&self, identity: &Identity) -> Option<BlindIndex> {
        if let (Some(given), Some(family), Some(born)) = (
            &identity.given_name,
            &identity.family_name,
            identity.birth_date,
        ) {
            return Some(self.index("person:name-dob", &[given, family, &iso_date(born)]));
        }
        if let Some(email) = &identity.email {
            return Some(self.index("person:email", &[email]));
        }
        if let (Some(license), Some(family)) = (&identity.license_number, &identity.family_name) {
            return Some(self.index("person:license", &[license, family]));
        }
        None
    }

    /// Every person key an identity can stand for (erasure looks for all).
    pub fn person_keys(&self, identity: &Identity) -> Vec<BlindIndex> {
        let mut keys = Vec::new();
        if let (Some(given), Some(family), Some(born)) = (
            &identity.given_name,
            &identity.family_name,
            identity.birth_date,
        ) {
            keys.push(self.index("person:name-dob", &[given, family, &iso_date(born)]));
        }
        if let Some(email) = &identity.email {
            keys.push(self.index("person:email", &[email]));
        }
        if let (Some(license), Some(family)) = (&identity.license_number, &identity.family_name) {
            keys.push(self.index("person:license", &[license, family]));
        }
        keys
    }

    /// The identity components failed attempts are limited by.
    pub fn identity_subjects(&self, identity: &Identity) -> Vec<(LimitSubject, BlindIndex)> {
        let mut subjects = Vec::new();
        if let Some(email) = &identity.email {
            subjects.push((LimitSubject::Email, self.index("limit:email", &[email])));
        }
        if let (Some(given), Some(family)) = (&identity.given_name, &identity.family_name) {
            subjects.push((
                LimitSubject::NamePair,
                self.index("limit:name", &[given, family]),
            ));
        }
        if let Some(license) = &identity.license_number {
            subjects.push((
                LimitSubject::License,
                self.index("limit:license", &[license]),
            ));
            if let Some(family) = &identity.family_name {
                subjects.push((
                    LimitSubject::LicenseFamily,
                    self.index("limit:license-family", &[family]),
                ));
            }
        }
        subjects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::{Identity, RawIdentity};
    use proptest::prelude::*;

    fn indexer() -> BlindIndexer {
        BlindIndexer::from_hex(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn spellings_of_one_person_share_their_indexes() {
        let a = Identity::parse(&RawIdentity {
            given_name: Some("Bob".into()),
            family_name: Some("O'Brien".into()),
            birth_date: Some("2001-04-17".into()),
            ..Default::default()
        })
        .unwrap();
        let b = Identity::parse(&RawIdentity {
            given_name: Some(" ROBERT ".into()),
            family_name: Some("obrien".into()),
            birth_date: Some("2001-04-17".into()),
            ..Default::default()
        })
        .unwrap();
        let indexer = indexer();
        assert_eq!(indexer.match_keys(&a), indexer.match_keys(&b));
        assert_eq!(indexer.person_key(&a), indexer.person_key(&b));
    }

    #[test]
    fn agreements_bind_each_other_field_to_a_match_key() {
        let parse = |given: &str| {
            Identity::parse(&RawIdentity {
                email: Some("j.baptiste@lincoln.k12.us".into()),
                given_name: Some(given.into()),
                family_name: Some("Baptiste".into()),
                ..Default::default()
            })
            .unwrap()
        };
        let indexer = indexer();
        let right = indexer.match_keys(&parse("Jean"));
        let wrong = indexer.match_keys(&parse("Zzz"));
        assert_eq!(right.email, wrong.email);
        let slot = |key, field| AGREEMENTS.iter().position(|a| *a == (key, field)).unwrap();
        let given = slot(MatchKey::Email, IdentityField::GivenName);
        let family = slot(MatchKey::Email, IdentityField::FamilyName);
        assert!(right.agreement[given].is_some());
        assert_ne!(right.agreement[given], wrong.agreement[given]);
        assert_eq!(right.agreement[family], wrong.agreement[family]);
        let born = slot(MatchKey::Email, IdentityField::BirthDate);
        assert_eq!(right.agreement[born], None, "no birth date given");
        // The same family name under another e-mail gives another index.
        let other = Identity {
            email: Some("other@lincoln.k12.us".into()),
            ..parse("Jean")
        };
        assert_ne!(
            indexer.match_keys(&other).agreement[family],
            right.agreement[family]
        );
    }

    #[test]
    fn another_key_gives_other_indexes() {
        let other = BlindIndexer::from_hex(&"cd".repeat(32)).unwrap();
        assert_ne!(
            indexer().index("match:email", &["a@b.co"]),
            other.index("match:email", &["a@b.co"])
        );
    }

    #[test]
    fn purposes_separate_indexes_of_the_same_text() {
        let indexer = indexer();
        assert_ne!(
            indexer.index("match:email", &["x"]),
            indexer.index("limit:email", &["x"])
        );
        assert_ne!(
            indexer.index("p", &["ab", "c"]),
            indexer.index("p", &["a", "bc"])
        );
    }

    proptest! {
        #[test]
        fn an_index_never_equals_or_contains_its_plain_value(value in "[a-z0-9@.]{1,40}") {
            let index = indexer().index("match:email", &[&value]);
            prop_assert_ne!(&index[..], value.as_bytes());
            if value.len() >= 4 {
                let plain = value.as_bytes();
                prop_assert!(!index.windows(plain.len().min(INDEX_LEN)).any(|w| w == &plain[..plain.len().min(INDEX_LEN)]));
            }
        }
    }
}
