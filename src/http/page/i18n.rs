//! The page's words, in Fluent files (`locales/<lang>/page.ftl`) compiled
//! into the binary. Community and sub-status names come from messages
//! `community-<key>` and `subsegment-<key>`; a community an operator added
//! shows its display name.

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader, langid};

use crate::domain::session::Locale;

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        // Bidi isolation marks would show in a plain-text context such as
        // a page title; every language here reads left to right.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static EN: LanguageIdentifier = langid!("en");
static FR: LanguageIdentifier = langid!("fr");
static RU: LanguageIdentifier = langid!("ru");

/// Translations for one locale.
#[derive(Clone, Copy)]
pub struct Tr {
    pub locale: Locale,
}

impl Tr {
    fn id(&self) -> &'static LanguageIdentifier {
        match self.locale {
            Locale::En => &EN,
            Locale::Fr => &FR,
            Locale::Ru => &RU,
        }
    }

    pub fn lang(&self) -> &'static str {
        self.locale.as_str()
    }

    /// A message; its id when it is missing (a test proves none is).
    pub fn t(&self, id: &str) -> String {
        LOCALES
            .try_lookup(self.id(), id)
            .unwrap_or_else(|| id.to_owned())
    }

    /// A message with arguments.
    pub fn t_with(&self, id: &str, args: &[(&'static str, Arg)]) -> String {
        let args: HashMap<Cow<'static, str>, FluentValue> = args
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    Arg::Text(text) => FluentValue::from(text.clone()),
                    Arg::Number(n) => FluentValue::from(*n),
                };
                (Cow::Borrowed(*name), value)
            })
            .collect();
        LOCALES
            .try_lookup_with_args(self.id(), id, &args)
            .unwrap_or_else(|| id.to_owned())
    }

    /// A message with a single text argument.
    pub fn t1(&self, id: &str, name: &'static str, value: &str) -> String {
        self.t_with(id, &[(name, Arg::Text(value.to_owned()))])
    }

    /// A community's name, or `fallback` (its display name) for one with
    /// no message.
    pub fn community(&self, key: &str, fallback: &str) -> String {
        LOCALES
            .try_lookup(self.id(), &format!("community-{key}"))
            .unwrap_or_else(|| fallback.to_owned())
    }

    pub fn subsegment(&self, key: &str) -> String {
        LOCALES
            .try_lookup(self.id(), &format!("subsegment-{key}"))
            .unwrap_or_else(|| key.replace('_', " "))
    }
}

pub enum Arg {
    Text(String),
    Number(i64),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn message_ids(locale: Locale) -> BTreeSet<String> {
        let path = format!(
            "{}/locales/{}/page.ftl",
            env!("CARGO_MANIFEST_DIR"),
            locale.as_str()
        );
        let text = std::fs::read_to_string(&path).expect("locale file");
        text.lines()
            .filter(|line| line.starts_with(|c: char| c.is_ascii_lowercase()))
            .filter_map(|line| line.split_once(" =").map(|(id, _)| id.trim().to_owned()))
            .collect()
    }

    /// Every message id the templates and the page's code use.
    fn used_ids() -> BTreeSet<String> {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut sources = Vec::new();
        for dir in ["templates/verify", "src/http/page"] {
            for entry in std::fs::read_dir(format!("{root}/{dir}")).expect("dir") {
                let path = entry.expect("entry").path();
                sources.push(std::fs::read_to_string(path).expect("source"));
            }
        }
        let mut ids = BTreeSet::new();
        for source in sources {
            for call in [".t(\"", ".t1(\"", ".t_with(\""] {
                for piece in source.split(call).skip(1) {
                    if let Some((id, _)) = piece.split_once('"') {
                        ids.insert(id.to_owned());
                    }
                }
            }
        }
        ids
    }

    #[test]
    fn every_language_has_every_message_and_no_other() {
        let english = message_ids(Locale::En);
        assert!(english.len() > 30, "the English file is read");
        for locale in [Locale::Fr, Locale::Ru] {
            let ids = message_ids(locale);
            let missing: Vec<_> = english.difference(&ids).collect();
            let extra: Vec<_> = ids.difference(&english).collect();
            assert!(missing.is_empty(), "{locale} lacks {missing:?}");
            assert!(extra.is_empty(), "{locale} has unknown {extra:?}");
        }
    }

    #[test]
    fn every_message_the_page_uses_exists_in_every_language() {
        let used = used_ids();
        assert!(used.len() > 20, "the page's messages are found: {used:?}");
        for locale in Locale::ALL {
            let ids = message_ids(locale);
            let missing: Vec<_> = used.iter().filter(|id| !ids.contains(*id)).collect();
            assert!(missing.is_empty(), "{locale} lacks {missing:?}");
        }
    }

    #[test]
    fn every_builtin_community_and_sub_status_has_a_name_in_every_language() {
        let builtin = [
            ("student", &["high_school", "college"][..]),
            ("teacher", &[]),
            ("nurse", &[]),
            (
                "military",
                &["active_duty", "veteran", "reservist", "military_family"],
            ),
            ("first_responder", &["police", "emt", "firefighter"]),
            ("senior", &[]),
        ];
        for locale in Locale::ALL {
            let ids = message_ids(locale);
            for (community, subsegments) in builtin {
                assert!(
                    ids.contains(&format!("community-{community}")),
                    "{locale}: {community}"
                );
                for sub in subsegments {
                    assert!(
                        ids.contains(&format!("subsegment-{sub}")),
                        "{locale}: {sub}"
                    );
                }
            }
        }
    }

    #[test]
    fn plurals_follow_each_language() {
        let left = |locale, n| Tr { locale }.t_with("attempts-left", &[("left", Arg::Number(n))]);
        assert!(left(Locale::En, 1).contains("1 attempt left"));
        assert!(left(Locale::En, 2).contains("2 attempts left"));
        assert!(left(Locale::Ru, 1).contains("1 попытка"));
        assert!(left(Locale::Ru, 2).contains("2 попытки"));
        assert!(left(Locale::Ru, 5).contains("5 попыток"));
        assert!(left(Locale::Fr, 2).contains("2 tentatives"));
    }
}
