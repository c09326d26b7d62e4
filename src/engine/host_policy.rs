//! Where granary may fetch from. Index documents name the URLs of files (PyPI links
//! may be on another host, npm tarballs and cargo `dl` templates too), so a
//! compromised or misconfigured upstream could make granary fetch internal
//! addresses. By default only public addresses over HTTP(S) are fetched, except the
//! upstream's own host (an upstream on a private network is normal) and the hosts in
//! `repos.NAME.allowed_hosts`; `only_allowed_hosts` restricts a repository to those.
//!
//! The check is made on the URL (scheme, and an address written as an IP), on every
//! address a name resolves to (a name that resolves to 169.254.169.254 is refused
//! too), and on every redirect hop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The hosts a repository trusts, and whether it trusts only them.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// The upstream's host and `allowed_hosts`, lowercase.
    trusted: Vec<String>,
    only_trusted: bool,
}

impl HostPolicy {
    #[must_use]
    pub fn new(upstream: &Url, allowed_hosts: &[String], only_allowed_hosts: bool) -> Self {
        let mut trusted: Vec<String> = allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if let Some(host) = upstream.host_str() {
            trusted.push(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase(),
            );
        }
        Self {
            trusted,
            only_trusted: only_allowed_hosts,
        }
    }

    fn trusts(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.trusted.iter().any(|t| t.eq_ignore_ascii_case(host))
    }

    /// Whether granary may fetch `url`; the reason names the host and the setting.
    ///
    /// # Errors
    /// A scheme other than HTTP(S), a host outside `allowed_hosts` when only those
    /// are allowed, or a non-public address written as an IP.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`{}:` URLs are not fetched (only http and https)",
                url.scheme()
            ));
        }
        let Some(host) = url.host() else {
            return Err("a URL without a host".to_owned());
        };
        let name = url.host_str().unwrap_or_default();
        if self.trusts(name) {
            return Ok(());
        }
        if self.only_trusted {
            return Err(format!(
                "`{name}` is not the upstream's host nor in `allowed_hosts` (the repository has `only_allowed_hosts = true`)"
            ));
        }
        let ip = match host {
            Host::Ipv4(ip) => IpAddr::V4(ip),
            Host::Ipv6(ip) => IpAddr::V6(ip),
            // Names are checked on what they resolve to (the resolver below).
            Host::Domain(_) => return Ok(()),
        };
        if is_public(ip) {
            Ok(())
        } else {
            Err(refusal(name))
        }
    }
}

fn refusal(host: &str) -> String {
    format!(
        "`{host}` is a non-public address and not the upstream's host; add it to the repository's `allowed_hosts` to fetch from it"
    )
}

/// Whether `ip` is an address on the public internet (not loopback, private,
/// link-local, unique-local, shared, documentation, multicast or unspecified).
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                // 100.64.0.0/10, shared address space (RFC 6598).
                || (a == 100 && (64..128).contains(&b))
                // 192.0.0.0/24 (RFC 6890) and 198.18.0.0/15 (benchmarking).
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Resolves names for the upstream client, keeping only the addresses the policy
/// allows: a trusted host's all, any other name's public ones.
pub struct PolicyResolver(pub Arc<HostPolicy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.0);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.trusts(&host) {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            if policy.only_trusted {
                return Err(format!(
                    "`{host}` is not the upstream's host nor in `allowed_hosts` (the repository has `only_allowed_hosts = true`)"
                )
                .into());
            }
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(refusal(&host).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_unless_trusted() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
        let upstream = Url::parse("http://127.0.0.1:9000/simple/").expect("url");
        let policy = HostPolicy::new(&upstream, &["127.0.0.2".to_owned()], false);
        let url = |u: &str| Url::parse(u).expect("url");
        assert!(
            policy.check(&url("http://127.0.0.1:1/x")).is_ok(),
            "the upstream's own host"
        );
        assert!(
            policy.check(&url("http://127.0.0.2:1/x")).is_ok(),
            "allowed"
        );
        let refused = policy
            .check(&url("http://127.0.0.3:1/x"))
            .expect_err("loopback");
        assert!(
            refused.contains("`127.0.0.3`") && refused.contains("allowed_hosts"),
            "{refused}"
        );
        assert!(policy.check(&url("http://[::1]:1/x")).is_err());
        assert!(policy.check(&url("file:///etc/passwd")).is_err());
        assert!(policy.check(&url("http://169.254.169.254/latest")).is_err());
        assert!(
            policy.check(&url("http://public.example/x")).is_ok(),
            "names: checked when resolved"
        );
        let only = HostPolicy::new(&upstream, &[], true);
        assert!(only.check(&url("http://public.example/x")).is_err());
        assert!(only.check(&url("http://127.0.0.1:2/x")).is_ok());
    }
}
