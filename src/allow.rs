//! `allowed_targets`: which addresses a probe request may make the exporter reach.
//!
//! Entries are CIDRs or addresses (`10.0.0.0/8`, `10.1.2.3`, `[2001:db8::/32]`), or host names,
//! each optionally with `:port` (`pacs1.hospital.example:104`, `10.0.0.0/8:104`). An empty list
//! allows any target.
//!
//! A target given by address must match an address entry. A target given by name is allowed
//! when the name is listed, or else when every address it resolves to is; and whatever the
//! name, the probe connects only to resolved addresses the list allows, so a name that resolves
//! somewhere else at probe time (DNS rebinding) cannot smuggle in an address.

use std::net::{IpAddr, SocketAddr};

use tokio::time::{timeout_at, Instant};

use crate::target::{Host, Target, TargetError};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Network {
        addr: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
    Name {
        name: String,
        port: Option<u16>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
}

/// A target (or a route's destination) allowed_targets does not allow.
#[derive(Debug, thiserror::Error)]
#[error("{role} {target} is not in allowed_targets{}", if *.resolved { " (it resolves to addresses outside it)" } else { "" })]
pub struct NotAllowed {
    /// What the request named it as: `target`, or `destination` (see
    /// [`NotAllowed::for_destination`]).
    pub role: &'static str,
    pub target: String,
    /// Whether it is a name that resolves outside the list (rather than an address or a name
    /// outside it).
    pub resolved: bool,
}

impl NotAllowed {
    /// The same refusal, of a route's destination.
    pub fn for_destination(self) -> NotAllowed {
        NotAllowed {
            role: "destination",
            ..self
        }
    }
}

/// An `allowed_targets` entry that is neither an address, a network nor a host name; each
/// variant names the entry as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllowListError {
    #[error("{entry:?}: unclosed '['")]
    UnclosedBracket { entry: String },
    #[error("{entry:?}: expected :port after ']'")]
    ExpectedPort { entry: String },
    #[error("{entry:?}: invalid port {port:?}")]
    Port { entry: String, port: String },
    #[error("{entry:?}: {addr:?} is not an IP address")]
    Address { entry: String, addr: String },
    #[error("{entry:?}: prefix length must be 0..={max}")]
    PrefixLength { entry: String, max: u8 },
    #[error("{entry:?}: {source}")]
    Host { entry: String, source: TargetError },
    #[error("{entry:?}: not an address, network or host name")]
    NotAHost { entry: String },
}

impl AllowListError {
    /// The `allowed_targets` entry refused.
    pub fn entry(&self) -> &str {
        match self {
            AllowListError::UnclosedBracket { entry }
            | AllowListError::ExpectedPort { entry }
            | AllowListError::Port { entry, .. }
            | AllowListError::Address { entry, .. }
            | AllowListError::PrefixLength { entry, .. }
            | AllowListError::Host { entry, .. }
            | AllowListError::NotAHost { entry } => entry,
        }
    }
}

impl AllowList {
    /// Parses the config's entries; the error names the bad entry.
    pub fn parse(entries: &[String]) -> Result<AllowList, AllowListError> {
        let rules = entries
            .iter()
            .map(|e| parse_rule(e))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a probe may connect to this address.
    pub fn allows_address(&self, addr: &SocketAddr) -> bool {
        self.is_empty()
            || self.rules.iter().any(|rule| match rule {
                Rule::Network {
                    addr: net,
                    prefix,
                    port,
                } => port.is_none_or(|p| p == addr.port()) && in_network(addr.ip(), *net, *prefix),
                Rule::Name { .. } => false,
            })
    }

    fn allows_name(&self, name: &str, port: u16) -> bool {
        self.rules.iter().any(|rule| match rule {
            Rule::Name {
                name: allowed,
                port: p,
            } => allowed.eq_ignore_ascii_case(name) && p.is_none_or(|p| p == port),
            Rule::Network { .. } => false,
        })
    }

    /// Whether a request for `target` may run; resolves names that are not listed themselves,
    /// within `deadline`. A name that does not resolve (or not in time) is let through: the
    /// probe then reports `dns`, and it can connect only to allowed addresses anyway.
    pub async fn check(&self, target: &Target, deadline: Instant) -> Result<(), NotAllowed> {
        if self.is_empty() {
            return Ok(());
        }
        match &target.host {
            Host::Ip(ip) => {
                if self.allows_address(&SocketAddr::new(*ip, target.port)) {
                    Ok(())
                } else {
                    Err(NotAllowed {
                        role: "target",
                        target: target.to_string(),
                        resolved: false,
                    })
                }
            }
            Host::Name(name) => {
                if self.allows_name(name, target.port) {
                    return Ok(());
                }
                let lookup = tokio::net::lookup_host((name.as_str(), target.port));
                let addrs: Vec<SocketAddr> = match timeout_at(deadline, lookup).await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    _ => return Ok(()),
                };
                if addrs.iter().all(|a| self.allows_address(a)) {
                    Ok(())
                } else {
                    Err(NotAllowed {
                        role: "target",
                        target: target.to_string(),
                        resolved: true,
                    })
                }
            }
        }
    }

    /// Whether a probe of `target` may connect to `addr`, one of the target's resolved
    /// addresses: a listed name's addresses are allowed, any other must be listed itself.
    pub fn allows_resolved(&self, target: &Target, addr: &SocketAddr) -> bool {
        match &target.host {
            Host::Name(name) if self.allows_name(name, target.port) => true,
            _ => self.allows_address(addr),
        }
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        // An IPv4-mapped IPv6 address is the IPv4 address.
        (IpAddr::V6(ip), IpAddr::V4(_)) => ip
            .to_ipv4_mapped()
            .is_some_and(|v4| in_network(IpAddr::V4(v4), net, prefix)),
        _ => false,
    }
}

fn parse_rule(written: &str) -> Result<Rule, AllowListError> {
    let entry = || written.to_string();
    let trimmed = written.trim();
    // [v6 or v6/prefix]:port, or bare IPv6 (with or without prefix) when it has several colons.
    let (body, port) = if let Some(rest) = trimmed.strip_prefix('[') {
        let (body, after) = rest
            .split_once(']')
            .ok_or_else(|| AllowListError::UnclosedBracket { entry: entry() })?;
        let port = match after {
            "" => None,
            _ => {
                let port = after
                    .strip_prefix(':')
                    .ok_or_else(|| AllowListError::ExpectedPort { entry: entry() })?;
                Some(parse_port(written, port)?)
            }
        };
        (body, port)
    } else if trimmed.matches(':').count() > 1 {
        (trimmed, None)
    } else {
        match trimmed.split_once(':') {
            Some((body, port)) => (body, Some(parse_port(written, port)?)),
            None => (trimmed, None),
        }
    };
    let (addr, prefix) = match body.split_once('/') {
        Some((addr, prefix)) => {
            let addr: IpAddr = addr.parse().map_err(|_| AllowListError::Address {
                entry: entry(),
                addr: addr.to_string(),
            })?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
                AllowListError::PrefixLength {
                    entry: entry(),
                    max,
                }
            })?;
            (addr, prefix)
        }
        None => match body.parse::<IpAddr>() {
            Ok(addr) => (addr, if addr.is_ipv4() { 32 } else { 128 }),
            Err(_) => {
                let target = Target::parse(body).map_err(|source| AllowListError::Host {
                    entry: entry(),
                    source,
                })?;
                let Host::Name(name) = target.host else {
                    return Err(AllowListError::NotAHost { entry: entry() });
                };
                return Ok(Rule::Name { name, port });
            }
        },
    };
    Ok(Rule::Network { addr, prefix, port })
}

/// The port of `entry`, as written after its colon.
fn parse_port(entry: &str, port: &str) -> Result<u16, AllowListError> {
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| AllowListError::Port {
            entry: entry.to_string(),
            port: port.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_ports() {
        let allow = list(&[
            "10.0.0.0/8",
            "192.0.2.7",
            "127.0.0.1:4242",
            "[2001:db8::/32]:104",
            "::1",
        ]);
        assert!(allow.allows_address(&addr("10.200.1.1:104")));
        assert!(!allow.allows_address(&addr("11.0.0.1:104")));
        assert!(allow.allows_address(&addr("192.0.2.7:11112")));
        assert!(!allow.allows_address(&addr("192.0.2.8:11112")));
        assert!(allow.allows_address(&addr("127.0.0.1:4242")));
        assert!(!allow.allows_address(&addr("127.0.0.1:4243")));
        assert!(allow.allows_address(&addr("[2001:db8:1::5]:104")));
        assert!(!allow.allows_address(&addr("[2001:db8:1::5]:105")));
        assert!(allow.allows_address(&addr("[::1]:1")));
        assert!(allow.allows_address(&addr("[::ffff:10.1.1.1]:104")));
        assert!(list(&[]).allows_address(&addr("203.0.113.1:1")));
        assert!(list(&["0.0.0.0/0"]).allows_address(&addr("203.0.113.1:1")));
    }

    #[test]
    fn bad_entries_are_named() {
        use AllowListError as E;
        type Check = fn(&AllowListError) -> bool;
        let cases: [(&str, Check); 8] = [
            ("10.0.0.0/33", |e| {
                matches!(e, E::PrefixLength { max: 32, .. })
            }),
            ("10.0.0.0/x", |e| {
                matches!(e, E::PrefixLength { max: 32, .. })
            }),
            ("[::1/129]", |e| {
                matches!(e, E::PrefixLength { max: 128, .. })
            }),
            (
                "host:0",
                |e| matches!(e, E::Port { port, .. } if port == "0"),
            ),
            (
                "host:port",
                |e| matches!(e, E::Port { port, .. } if port == "port"),
            ),
            ("[::1", |e| matches!(e, E::UnclosedBracket { .. })),
            ("bad host", |e| matches!(e, E::Host { .. })),
            (
                "x/8",
                |e| matches!(e, E::Address { addr, .. } if addr == "x"),
            ),
        ];
        for (bad, expected) in cases {
            let err = AllowList::parse(&[bad.to_string()]).expect_err(bad);
            assert!(expected(&err), "{bad}: {err:?}");
            assert!(err.to_string().starts_with(&format!("{bad:?}: ")), "{err}");
        }
        let err = AllowList::parse(&["1.2.3.4/8/8".to_string()]).expect_err("two prefixes");
        assert_eq!(
            err.to_string(),
            "\"1.2.3.4/8/8\": prefix length must be 0..=32"
        );
        let err = AllowList::parse(&["[::1]x".to_string()]).expect_err("text after ]");
        assert_eq!(err.to_string(), "\"[::1]x\": expected :port after ']'");
    }

    #[tokio::test]
    async fn names_listed_or_resolved() {
        let by_name = list(&["pacs1.hospital.example:104", "localhost:4242"]);
        let target = |t: &str| Target::parse(t).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let listed = target("A@PACS1.hospital.example:104");
        assert!(by_name.check(&listed, deadline).await.is_ok());
        // A listed name: its addresses are allowed whatever they are.
        assert!(by_name.allows_resolved(&target("A@localhost:4242"), &addr("127.0.0.1:4242")));
        assert!(by_name
            .check(&target("A@10.0.0.1:104"), deadline)
            .await
            .is_err());
        // An unlisted name is judged by what it resolves to (localhost: /etc/hosts, no packets).
        let by_net = list(&["127.0.0.0/8", "::1"]);
        assert!(by_net
            .check(&target("A@localhost:104"), deadline)
            .await
            .is_ok());
        let other = list(&["10.0.0.0/8"]);
        assert!(other
            .check(&target("A@localhost:104"), deadline)
            .await
            .is_err());
        assert!(!other.allows_resolved(&target("A@localhost:104"), &addr("127.0.0.1:104")));
    }
}
