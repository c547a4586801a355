//! Hosted verification sessions: the languages the page speaks, where a
//! shopper may be sent back to, and the brand's colour.

use std::fmt;
use std::str::FromStr;

use url::Url;

use super::Invalid;

/// The languages of the hosted page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locale {
    En,
    Fr,
    Ru,
}

impl Locale {
    pub const ALL: [Locale; 3] = [Locale::En, Locale::Fr, Locale::Ru];

    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
            Locale::Ru => "ru",
        }
    }

    /// The best of ours for an `Accept-Language` header (RFC 9110, 12.5.4):
    /// the highest-weighted range whose primary language we speak; English
    /// when none is.
    pub fn negotiate(accept_language: &str) -> Locale {
        let mut best: Option<(f32, usize, Locale)> = None;
        for (at, range) in accept_language.split(',').enumerate().take(32) {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let Ok(locale) = primary.parse::<Locale>() else {
                continue;
            };
            if weight > 0.0 && best.is_none_or(|(w, _, _)| weight > w) {
                best = Some((weight, at, locale));
            }
        }
        best.map_or(Locale::En, |(_, _, locale)| locale)
    }
}

impl FromStr for Locale {
    type Err = Invalid;

    fn from_str(raw: &str) -> Result<Self, Invalid> {
        match raw.to_ascii_lowercase().as_str() {
            "en" => Ok(Locale::En),
            "fr" => Ok(Locale::Fr),
            "ru" => Ok(Locale::Ru),
            _ => Err(Invalid::new("locale", "one of en, fr, ru")),
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const RETURN_URL_MAX_BYTES: usize = 2000;

/// Where a shopper is sent back to: an absolute http(s) URL, without
/// credentials or fragment, on an origin the operator allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnUrl(Url);

impl ReturnUrl {
    pub fn parse(raw: &str, allowed_origins: &[String]) -> Result<Self, Invalid> {
        let invalid = |message: &str| Invalid::new("return_url", message);
        if raw.len() > RETURN_URL_MAX_BYTES {
            return Err(invalid("at most 2000 bytes"));
        }
        let url = Url::parse(raw).map_err(|_| invalid("must be an absolute URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(invalid("must be an http or https URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry credentials"));
        }
        if url.fragment().is_some() {
            return Err(invalid("must not carry a fragment"));
        }
        let origin = url.origin().ascii_serialization();
        if !allowed_origins.contains(&origin) {
            return Err(invalid(&format!(
                "the origin {origin} is not allowed (hosted.return_origins, or the key's \
                 return_origins)"
            )));
        }
        Ok(ReturnUrl(url))
    }

    /// A stored URL, allowed when it was stored.
    pub fn stored(raw: &str) -> Option<Self> {
        Url::parse(raw).ok().map(ReturnUrl)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The origin, as a Content-Security-Policy source.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    /// The URL with `session_id` set in its query (one it carried already
    /// is dropped, so the shop reads only this one).
    pub fn with_session(&self, id: uuid::Uuid) -> String {
        let mut url = self.0.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| name != "session_id")
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("session_id", &id.to_string());
        url.into()
    }
}

/// An origin as `hosted.return_origins` lists it: `scheme://host[:port]`,
/// written the way browsers compare origins (lower-case, IDN as punycode,
/// a default port dropped).
pub fn parse_origin(raw: &str) -> Result<String, String> {
    let refused = || format!("`{raw}` must be an origin: scheme://host[:port], nothing after it");
    let url = Url::parse(raw).map_err(|_| refused())?;
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !raw.trim_end_matches('/').ends_with(['?', '#']);
    let host_ok = url
        .host_str()
        .is_some_and(|h| !h.is_empty() && !h.contains('*'));
    if !matches!(url.scheme(), "http" | "https") || !bare || !host_ok {
        return Err(refused());
    }
    Ok(url.origin().ascii_serialization())
}

/// A brand colour, `#rrggbb`, dark enough for white text on it and for
/// itself on white (WCAG 2.2 AA: a contrast of 4.5:1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandColour(String);

pub const AA_CONTRAST: f64 = 4.5;

impl BrandColour {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let hex = raw
            .strip_prefix('#')
            .filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| format!("`{raw}` is not a colour written #rrggbb"))?;
        let channel = |at: usize| u8::from_str_radix(&hex[at..at + 2], 16).unwrap_or(0);
        let ratio = contrast_with_white([channel(0), channel(2), channel(4)]);
        if ratio < AA_CONTRAST {
            return Err(format!(
                "`{raw}` has a contrast of {ratio:.2}:1 with white; the page needs {AA_CONTRAST}:1 \
                 (a darker colour)"
            ));
        }
        Ok(BrandColour(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// WCAG 2.2's contrast ratio between a colour and white.
pub fn contrast_with_white(rgb: [u8; 3]) -> f64 {
    let linear = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * linear(rgb[0]) + 0.7152 * linear(rgb[1]) + 0.0722 * linear(rgb[2]);
    1.05 / (luminance + 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_language_picks_the_best_weighted_of_ours() {
        assert_eq!(Locale::negotiate("fr-CA,fr;q=0.9,en;q=0.8"), Locale::Fr);
        assert_eq!(Locale::negotiate("de-DE,ru;q=0.5,en;q=0.7"), Locale::En);
        assert_eq!(Locale::negotiate("de, ru;q=0.3"), Locale::Ru);
        assert_eq!(Locale::negotiate("ja"), Locale::En);
        assert_eq!(Locale::negotiate(""), Locale::En);
        assert_eq!(Locale::negotiate("ru;q=0, fr;q=0.1"), Locale::Fr);
    }

    #[test]
    fn a_return_url_must_be_on_an_allowed_origin() {
        let allowed = vec!["https://shop.example".to_owned()];
        let url = ReturnUrl::parse("https://shop.example/back?cart=1", &allowed).expect("allowed");
        assert!(
            url.with_session(uuid::Uuid::nil())
                .ends_with("/back?cart=1&session_id=00000000-0000-0000-0000-000000000000")
        );
        let planted = ReturnUrl::parse("https://shop.example/b?session_id=planted&x=1", &allowed)
            .expect("allowed");
        assert_eq!(
            planted.with_session(uuid::Uuid::nil()),
            "https://shop.example/b?x=1&session_id=00000000-0000-0000-0000-000000000000"
        );
        for refused in [
            "https://evil.example/back",
            "http://shop.example/back",
            "https://shop.example.evil.example/",
            "https://user:pw@shop.example/",
            "https://shop.example/#x",
            "javascript:alert(1)",
            "/relative",
        ] {
            assert!(ReturnUrl::parse(refused, &allowed).is_err(), "{refused}");
        }
    }

    #[test]
    fn origins_are_bare_and_written_as_browsers_compare_them() {
        assert_eq!(
            parse_origin("https://shop.example").unwrap(),
            "https://shop.example"
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8081/").unwrap(),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            parse_origin("HTTPS://Shop.Example:443").unwrap(),
            "https://shop.example"
        );
        assert_eq!(
            parse_origin("https://bücher.example").unwrap(),
            "https://xn--bcher-kva.example"
        );
        for refused in [
            "https://shop.example/path",
            "ftp://shop.example",
            "http://*.shop.example",
            "https://user@shop.example",
            "https://shop.example/?",
        ] {
            assert!(parse_origin(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_brand_colour_too_light_for_white_text_is_refused() {
        assert!(BrandColour::parse("#1d4ed8").is_ok());
        assert!(BrandColour::parse("#ffcc00").is_err());
        assert!(BrandColour::parse("blue").is_err());
        assert!((contrast_with_white([0, 0, 0]) - 21.0).abs() < 0.01);
    }
}
