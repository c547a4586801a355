//! Which receivers offergate may call: hosts on the allow-list, and, unless
//! private addresses are allowed (development), only public addresses. The
//! check runs at registration and again at every delivery, in the resolver
//! the delivery's connection uses, so a name that later resolves elsewhere
//! (DNS rebinding) is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

use super::settings::WebhookSettings;

/// The longest endpoint URL.
pub const URL_MAX: usize = 2_000;
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("must be an absolute http or https URL of at most {URL_MAX} characters")]
    Malformed,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("the host is not on the allow-list (webhooks.allowed_hosts)")]
    NotAllowed,
    #[error("resolves to a private, loopback or link-local address, which are refused")]
    Private,
    #[error("the host does not resolve")]
    Unresolved,
}

pub struct Destinations {
    allowed_hosts: Vec<String>,
    allow_private: bool,
}

impl Destinations {
    pub fn new(settings: &WebhookSettings) -> Self {
        Destinations {
            allowed_hosts: settings
                .allowed_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            allow_private: settings.allow_private_addresses,
        }
    }

    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// Parses an endpoint URL and checks its host against the allow-list.
    pub fn parse(&self, raw: &str) -> Result<Url, Refused> {
        if raw.len() > URL_MAX || !shaped(raw) {
            let credentials = raw
                .split_once("://")
                .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or_default().contains('@'));
            return Err(if credentials {
                Refused::Credentials
            } else {
                Refused::Malformed
            });
        }
        let url = Url::parse(raw).map_err(|_| Refused::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Refused::Malformed);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !self.allowed_hosts.is_empty() && !self.allowed_hosts.iter().any(|a| matches(a, &host)) {
            return Err(Refused::NotAllowed);
        }
        Ok(url)
    }

    /// `parse`, then the addresses the host resolves to (each must be
    /// public unless private ones are allowed).
    pub async fn check(&self, raw: &str) -> Result<Url, Refused> {
        let url = self.parse(raw)?;
        if self.allow_private {
            return Ok(url);
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        self.resolve(&host, port).await?;
        Ok(url)
    }

    /// The addresses of a host, all of them allowed, or why not.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port)))
                .await
                .map_err(|_| Refused::Unresolved)?
                .map_err(|_| Refused::Unresolved)?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Refused::Unresolved);
        }
        if !self.allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(Refused::Private);
        }
        Ok(addrs)
    }
}

/// The shape the OpenAPI document states: `http://` or `https://`, a host
/// (and port) without `?`, `#` or `@`, then nothing or a path; and, beyond
/// it, no blank or control character anywhere.
fn shaped(raw: &str) -> bool {
    let Some(rest) = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    !authority.is_empty()
        && !authority.contains(['?', '#', '@'])
        && !raw
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\u{feff}')
}

fn matches(allowed: &str, host: &str) -> bool {
    match allowed.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => allowed == host,
    }
}

/// Whether an address is one the public internet routes to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// The resolver of delivery connections: every address a receiver's name
/// resolves to is checked when the connection is made.
pub struct CheckedResolver(pub std::sync::Arc<Destinations>);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let destinations = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = destinations.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn only_the_documented_shape_is_taken() {
        for good in [
            "https://h.example.com/x?y=1",
            "http://127.0.0.1:9/hook",
            "https://h",
        ] {
            assert!(shaped(good), "{good}");
        }
        for bad in [
            "HTTPS://h/",
            "https://",
            "https://h?x",
            "https://u@h/",
            "https://h/a b",
            "ftp://h/",
            " https://h/",
        ] {
            assert!(!shaped(bad), "{bad}");
        }
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        assert!(matches("*.example.com", "hooks.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", "badexample.com"));
        assert!(matches("hooks.example.com", "hooks.example.com"));
    }
}
