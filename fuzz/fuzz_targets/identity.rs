//! The identity canonicaliser and the blind indexes derived from it.
//!
//! Input: text, split at U+001F (unit separator) into up to seven parts:
//! the first is canonicalised on its own; the next six are the identity
//! fields email, given_name, family_name, birth_date, organization and
//! license_number (an empty part is an absent field).

#![no_main]

use libfuzzer_sys::fuzz_target;
use offergate::domain::identity::{
    Identity, RawIdentity, canonical_email, canonical_given_name, canonical_text,
};
use offergate_fuzz::indexer;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1f}');
    let first = parts.next().unwrap_or("");

    let canonical = canonical_text(first);
    assert_eq!(
        canonical_text(&canonical),
        canonical,
        "canonical_text is not idempotent on {first:?}"
    );
    assert!(
        canonical.chars().all(char::is_alphanumeric),
        "{first:?} canonicalised to {canonical:?}, not only letters and digits"
    );
    assert_eq!(
        canonical.to_lowercase(),
        canonical,
        "{first:?} canonicalised to {canonical:?}, not lowercase"
    );
    let given = canonical_given_name(first);
    assert_eq!(
        canonical_given_name(&given),
        given,
        "canonical_given_name is not idempotent on {first:?}"
    );
    let email = canonical_email(first);
    assert_eq!(
        canonical_email(&email),
        email,
        "canonical_email is not idempotent on {first:?}"
    );

    let mut field = || parts.next().filter(|p| !p.is_empty()).map(str::to_owned);
    let raw = RawIdentity {
        email: field(),
        given_name: field(),
        family_name: field(),
        birth_date: field(),
        organization: field(),
        license_number: field(),
    };
    let Ok(identity) = Identity::parse(&raw) else {
        return;
    };
    for text in [
        &identity.given_name,
        &identity.family_name,
        &identity.license_number,
        &identity.organization,
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            !text.is_empty() && text.chars().all(char::is_alphanumeric),
            "{text:?}"
        );
    }
    // The same key gives the same indexes, from a second indexer too.
    let (one, two) = (indexer(), indexer());
    let keys = one.match_keys(&identity);
    assert_eq!(keys, one.match_keys(&identity));
    assert_eq!(keys, two.match_keys(&identity));
    let person = one.person_key(&identity);
    assert_eq!(person, two.person_key(&identity));
    // A person key exactly when some match rule applies, and it is the
    // first of the keys erasure looks for.
    assert_eq!(person.is_some(), identity.is_matchable(), "{identity:?}");
    let all = one.person_keys(&identity);
    assert_eq!(all.first().copied(), person);
    assert_eq!(
        one.identity_subjects(&identity),
        two.identity_subjects(&identity)
    );
    // Purposes keep indexes of one value apart: a match key is never the
    // person key, even when both come from the e-mail alone.
    for index in [keys.email, keys.name_dob, keys.license]
        .into_iter()
        .flatten()
    {
        assert!(!all.contains(&index), "a match key equals a person key");
    }
});
