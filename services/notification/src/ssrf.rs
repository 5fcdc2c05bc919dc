//! SSRF guard for user-supplied webhook URLs (reliability-security.md §7).
//!
//! [`check_url`] runs when a URL is saved and again at every send; [`resolve`] resolves the
//! host at send time and refuses every non-public address; the sender then connects to exactly
//! the checked address (reqwest's `resolve` override), so a second DNS answer (rebinding)
//! cannot redirect it, and follows no redirects.
//!
//! Literal tricks — decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f.1` — are normalised
//! by the WHATWG URL parser to `127.0.0.1` before the address check sees them.
//! Hosts in the allowlist (`BATTLESCOPE_WEBHOOK_ALLOWED_HOSTS`, `host[:port]`) may use http and
//! private addresses: self-hosted targets and tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SsrfError {
    #[error("invalid url: {0}")]
    Invalid(String),
    #[error("only https webhooks are allowed")]
    NotHttps,
    #[error("credentials in webhook urls are not allowed")]
    UserInfo,
    #[error("port {0} is not allowed")]
    Port(u16),
    #[error("address {0} is not public")]
    Forbidden(IpAddr),
    #[error("host does not resolve: {0}")]
    Unresolvable(String),
}

/// Hosts exempt from the public-address rule.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    entries: Vec<(String, Option<u16>)>,
}

impl AllowList {
    /// Parses `host[:port],host[:port]` (IPv6 literals in brackets).
    pub fn parse(s: &str) -> Self {
        let entries = s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let e = e.to_ascii_lowercase();
                match e.rsplit_once(':') {
                    Some((h, p))
                        if !h.ends_with(':')
                            && p.parse::<u16>().is_ok()
                            && (!h.contains(':') || h.starts_with('[')) =>
                    {
                        (h.to_owned(), p.parse().ok())
                    }
                    _ => (e, None),
                }
            })
            .collect();
        Self { entries }
    }

    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        self.entries
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
    }
}

/// Checks the form of a webhook URL (no DNS).
pub fn check_url(raw: &str, allow: &AllowList) -> Result<Url, SsrfError> {
    let url = Url::parse(raw).map_err(|e| SsrfError::Invalid(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SsrfError::UserInfo);
    }
    if url.host().is_none() {
        return Err(SsrfError::Invalid("no host".into()));
    }
    let allowed = allow.allows(&url);
    match url.scheme() {
        "https" => {}
        "http" if allowed => {}
        _ => return Err(SsrfError::NotHttps),
    }
    if !allowed {
        let port = url.port_or_known_default().unwrap_or(0);
        if ![443, 8443].contains(&port) {
            return Err(SsrfError::Port(port));
        }
        if let Some(Host::Ipv4(ip)) = url.host() {
            check_ip(IpAddr::V4(ip))?;
        }
        if let Some(Host::Ipv6(ip)) = url.host() {
            check_ip(IpAddr::V6(ip))?;
        }
    }
    Ok(url)
}

/// True for addresses a webhook may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible forms: judge the IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    let blocked = ip.is_unspecified()
        || o[0] == 0
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // 169.254/16, cloud metadata 169.254.169.254
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && (o[2] == 0 || o[2] == 2))
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || ip.is_multicast()
        || o[0] >= 240 // reserved and broadcast
        ;
    !blocked
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let blocked = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 64:ff9b::/96
        || (s[0] == 0x100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard 100::/64
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        // IPv4-compatible ::a.b.c.d (deprecated) is never a real public target.
        || (s[0..6] == [0, 0, 0, 0, 0, 0]);
    !blocked
}

fn check_ip(ip: IpAddr) -> Result<(), SsrfError> {
    if is_public(ip) {
        Ok(())
    } else {
        Err(SsrfError::Forbidden(ip))
    }
}

/// Resolves a checked URL's host at send time and returns the one address to connect to.
/// Every resolved address must be public (one private answer taints the name).
pub async fn resolve(url: &Url, allow: &AllowList) -> Result<SocketAddr, SsrfError> {
    let port = url.port_or_known_default().unwrap_or(443);
    let allowed = allow.allows(url);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(Host::Domain(d)) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|e| SsrfError::Unresolvable(format!("{d}: {e}")))?
            .collect(),
        None => return Err(SsrfError::Invalid("no host".into())),
    };
    if addrs.is_empty() {
        return Err(SsrfError::Unresolvable(url.host_str().unwrap_or("").into()));
    }
    if !allowed {
        for a in &addrs {
            check_ip(a.ip())?;
        }
    }
    Ok(addrs[0])
}
