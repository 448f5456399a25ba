//! SSRF guard: the dispatcher refuses receivers that resolve to loopback, private,
//! link-local, CGNAT, multicast or other non-global addresses (IPv4 and IPv6, including
//! IPv4-mapped and NAT64 forms), unless the deployment allow-lists a network.
//!
//! The check runs in the HTTP client's resolver, i.e. at connect time on the addresses
//! actually used, so a DNS name that changes its answer (rebinding) cannot get around it. URLs
//! with a literal IP never reach the resolver and are checked before sending. Redirects are
//! never followed (see [`crate::client`]). `require_https` refuses plain-HTTP receivers.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address is a network of
/// one (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(IpNet);

impl Network {
    pub fn parse(s: &str) -> Result<Network, String> {
        let t = s.trim();
        t.parse::<IpNet>()
            .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
            .map(Network)
            .map_err(|_| format!("`{s}` is not an IP network (e.g. 10.0.0.0/8, fd00::/8)"))
    }

    /// True when `ip` (IPv4-mapped and NAT64 forms as the IPv4 address they reach) is in the
    /// network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses as the IPv4
/// address they reach.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// True for addresses reachable on the public internet.
pub fn is_global(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || o[0] == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || ip.is_documentation()
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || ip.is_multicast()
        || o[0] >= 240 // reserved and broadcast
        || ip.is_broadcast())
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments incl. Teredo
        || (s[0] == 0x2002)) // 6to4 (embeds an arbitrary IPv4)
}

/// Which receivers the dispatcher may reach.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Networks allowed even though not global (e.g. `10.0.0.0/8` for in-cluster receivers).
    pub allow: Vec<Network>,
    pub require_https: bool,
}

/// Why a receiver is refused; its text names the address.
#[derive(Debug, thiserror::Error)]
#[error("blocked: {0}")]
pub struct Blocked(pub String);

impl AddressPolicy {
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_global(ip) || self.allow.iter().any(|n| n.contains(ip))
    }

    /// Checks a URL before sending: scheme, and a literal IP host (DNS names are checked by
    /// the resolver at connect time).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Blocked> {
        if self.require_https && url.scheme() != "https" {
            return Err(Blocked(format!("{} is not https and this deployment requires https", url.scheme())));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        match ip {
            Some(ip) if !self.allows(ip) => Err(Blocked(format!("{ip} is not a public address"))),
            _ => Ok(()),
        }
    }
}

/// The resolver the HTTP client uses: system DNS, then the policy on every address.
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                addrs.into_iter().partition(|a| policy.allows(a.ip()));
            if ok.is_empty() {
                let list: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
                return Err(
                    Box::new(Blocked(format!("{host} resolves to {} (not a public address)", list.join(", "))))
                        as Box<dyn std::error::Error + Send + Sync>,
                );
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_non_global_class_is_refused() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2001:db8::1",
            "2002:7f00:1::1",
        ] {
            assert!(!is_global(ip(s)), "{s} must be refused");
        }
        for s in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(is_global(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn allow_lists_networks() {
        let p = AddressPolicy {
            allow: vec![Network::parse("127.0.0.0/8").unwrap(), Network::parse("fd00::/8").unwrap()],
            require_https: false,
        };
        assert!(p.allows(ip("127.0.0.1")) && p.allows(ip("::ffff:127.0.0.1")) && p.allows(ip("fd00::5")));
        assert!(!p.allows(ip("10.0.0.1")));
        assert!(Network::parse("10.0.0.0/33").is_err() && Network::parse("nope").is_err());
        let url = url::Url::parse("http://[::ffff:127.0.0.1]:8080/x").unwrap();
        assert!(AddressPolicy::default().check_url(&url).is_err());
        assert!(p.check_url(&url).is_ok());
        let https = AddressPolicy { require_https: true, ..Default::default() };
        assert!(https.check_url(&url::Url::parse("http://example.com/").unwrap()).is_err());
    }

    #[test]
    fn a_bare_address_is_a_network_of_one_and_host_bits_are_ignored() {
        let one = Network::parse(" 10.1.2.3 ").unwrap();
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        assert!(Network::parse("fd00::1").unwrap().contains(ip("fd00::1")));
        assert!(Network::parse("10.9.9.9/8").unwrap().contains(ip("10.0.0.1")));
        assert!(!Network::parse("10.0.0.0/8").unwrap().contains(ip("::a00:1")));
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        use reqwest::dns::Resolve;
        let guarded = GuardedResolver { policy: Arc::new(AddressPolicy::default()) };
        let err = match guarded.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("not a public address"), "{err}");
    }
}
