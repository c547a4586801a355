//! API keys: `ogk_` + 12-character id + 32-character secret + 6-character
//! checksum, all base62. The fixed prefix lets secret scanners find a leaked
//! key; the CRC-32 checksum lets a mistyped or made-up key be refused before
//! any database call or hash. The id is public (it names the key in listings
//! and logs); only an argon2id hash of the secret is stored.

use std::fmt;
use std::str::FromStr;

use rand::RngExt;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};

pub const PREFIX: &str = "ogk_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
const KEY_LEN: usize = PREFIX.len() + ID_LEN + SECRET_LEN + CHECKSUM_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Marketers and back office: everything.
    Admin,
    /// E-commerce checkouts: verify consumers, issue and redeem tokens.
    Checkout,
    /// A partner honouring offers: sees and confirms its own redemptions.
    Partner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Checkout => "checkout",
            Role::Partner => "partner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role `{0}`: expected admin, checkout or partner")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "checkout" => Ok(Role::Checkout),
            "partner" => Ok(Role::Partner),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// The public half of a key: 12 base62 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a key id is 12 letters and digits")]
pub struct InvalidKeyId;

impl KeyId {
    pub fn parse(s: &str) -> Result<Self, InvalidKeyId> {
        if s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(InvalidKeyId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a presented key was refused without looking it up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MalformedKey {
    #[error("API keys start with `ogk_`")]
    Prefix,
    #[error("an API key is {KEY_LEN} characters")]
    Length,
    #[error("an API key holds only letters and digits after `ogk_`")]
    Alphabet,
    #[error("the API key's checksum does not match: it was mistyped or truncated")]
    Checksum,
}

/// A well-formed key as presented by a caller, or just generated.
pub struct ApiKey {
    id: KeyId,
    full: SecretString,
}

impl ApiKey {
    pub fn parse(raw: &str) -> Result<Self, MalformedKey> {
        let body = raw.strip_prefix(PREFIX).ok_or(MalformedKey::Prefix)?;
        if raw.len() != KEY_LEN {
            return Err(MalformedKey::Length);
        }
        if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedKey::Alphabet);
        }
        let (payload, checksum) = raw.split_at(KEY_LEN - CHECKSUM_LEN);
        if checksum != checksum_of(payload) {
            return Err(MalformedKey::Checksum);
        }
        Ok(ApiKey {
            id: KeyId(body[..ID_LEN].to_owned()),
            full: SecretString::from(raw.to_owned()),
        })
    }

    pub fn generate() -> Self {
        let random: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(ID_LEN + SECRET_LEN)
            .map(char::from)
            .collect();
        let (id, secret) = random.split_at(ID_LEN);
        Self::assemble(&KeyId(id.to_owned()), secret)
    }

    /// The key made of an id and a secret, with its checksum. A secret that
    /// is not 32 letters and digits yields a key that fails to parse.
    pub fn assemble(id: &KeyId, secret: &str) -> Self {
        let payload = format!("{PREFIX}{id}{secret}");
        let full = format!("{payload}{}", checksum_of(&payload));
        ApiKey {
            id: id.clone(),
            full: SecretString::from(full),
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The secret part: what the stored argon2id hash is of.
    pub fn secret(&self) -> &str {
        let full = self.full.expose_secret();
        full.get(PREFIX.len() + ID_LEN..full.len().saturating_sub(CHECKSUM_LEN))
            .unwrap_or("")
    }

    /// The whole key, to be shown once to whoever created it.
    pub fn expose(&self) -> &str {
        self.full.expose_secret()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn checksum_of(payload: &str) -> String {
    let mut value = crc32fast::hash(payload.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_to_the_same_id_and_secret() {
        let key = ApiKey::generate();
        let parsed = ApiKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.id(), key.id());
        assert_eq!(parsed.secret(), key.secret());
        assert_eq!(key.expose().len(), KEY_LEN);
        assert!(key.expose().starts_with("ogk_"));
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let key = ApiKey::generate();
        let mut chars: Vec<char> = key.expose().chars().collect();
        chars[20] = if chars[20] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(ApiKey::parse(&typo).unwrap_err(), MalformedKey::Checksum);
    }

    #[test]
    fn malformed_keys_say_what_is_wrong() {
        assert_eq!(
            ApiKey::parse("sk_live_123").unwrap_err(),
            MalformedKey::Prefix
        );
        assert_eq!(
            ApiKey::parse("ogk_short").unwrap_err(),
            MalformedKey::Length
        );
        let with_symbol = format!("ogk_{}", "-".repeat(KEY_LEN - 4));
        assert_eq!(
            ApiKey::parse(&with_symbol).unwrap_err(),
            MalformedKey::Alphabet
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.secret()));
        assert!(shown.contains(key.id().as_str()));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::Admin, Role::Checkout, Role::Partner] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
