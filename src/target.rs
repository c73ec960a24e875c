//! Probe targets (`AET@host:port`) and AE titles.
//!
//! A target names the peer a probe talks to: the *called* AE title, a host and a TCP port.
//! Parsing is strict and never guesses: a title the protocol forbids is rejected, not truncated,
//! because a truncated title would probe a different application entity than the one asked for.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The DICOM port assigned by IANA; used when a target names none.
pub const DEFAULT_PORT: u16 = 104;

/// An application entity title: 1–16 characters of the DICOM default repertoire (printable
/// ASCII), no backslash, not all spaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct AeTitle(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AeTitleError {
    #[error("AE title is empty")]
    Empty,
    #[error("AE title is {0} characters long; at most 16 are allowed")]
    TooLong(usize),
    #[error("AE title is all spaces")]
    AllSpaces,
    #[error("AE title contains a backslash")]
    Backslash,
    #[error("AE title contains {0:?}, which is not in the DICOM default character repertoire")]
    BadCharacter(char),
}

impl AeTitle {
    pub fn new(title: &str) -> Result<Self, AeTitleError> {
        if title.is_empty() {
            return Err(AeTitleError::Empty);
        }
        if let Some(c) = title.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(AeTitleError::BadCharacter(c));
        }
        if title.contains('\\') {
            return Err(AeTitleError::Backslash);
        }
        if title.len() > 16 {
            return Err(AeTitleError::TooLong(title.len()));
        }
        if title.trim().is_empty() {
            return Err(AeTitleError::AllSpaces);
        }
        Ok(AeTitle(title.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<AeTitle> for String {
    fn from(title: AeTitle) -> String {
        title.0
    }
}

impl<'de> Deserialize<'de> for AeTitle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let title = String::deserialize(deserializer)?;
        AeTitle::new(&title).map_err(|e| serde::de::Error::custom(format!("{e}: {title:?}")))
    }
}

/// Where a target lives: an IP address, or a host name still to be resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// A parsed probe target. `called_aet` is `None` when the target had no `AET@` part; the
/// module's `called_aet` applies then.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub called_aet: Option<AeTitle>,
    pub host: Host,
    pub port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("target is empty")]
    Empty,
    #[error("called {0}")]
    AeTitle(#[from] AeTitleError),
    #[error("target has no host")]
    NoHost,
    #[error("invalid port {0:?}: expected a number from 1 to 65535")]
    BadPort(String),
    #[error("invalid IPv6 address {0:?}")]
    BadIpv6(String),
    #[error("IPv6 addresses must be written in brackets, e.g. AET@[::1]:104")]
    Ipv6WithoutBrackets,
    #[error("invalid host name {0:?}")]
    BadHost(String),
}

impl Target {
    /// Parses `AET@host:port`, `AET@host`, `host:port` or `host`; IPv6 addresses in brackets.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        if text.is_empty() {
            return Err(TargetError::Empty);
        }
        // A host never contains '@', an AE title may: split at the last one.
        let (called_aet, address) = match text.rsplit_once('@') {
            Some((title, address)) => (Some(AeTitle::new(title)?), address),
            None => (None, text),
        };
        let (host, port) = split_host_port(address)?;
        Ok(Target {
            called_aet,
            host,
            port,
        })
    }
}

fn split_host_port(address: &str) -> Result<(Host, u16), TargetError> {
    if address.is_empty() {
        return Err(TargetError::NoHost);
    }
    if let Some(rest) = address.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| TargetError::BadIpv6(address.to_string()))?;
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| TargetError::BadIpv6(ip.to_string()))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => match after.strip_prefix(':') {
                Some(port) => parse_port(port)?,
                None => return Err(TargetError::BadIpv6(address.to_string())),
            },
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    let (host, port) = match address.split_once(':') {
        Some((host, port)) => {
            if port.contains(':') {
                return Err(TargetError::Ipv6WithoutBrackets);
            }
            (host, parse_port(port)?)
        }
        None => (address, DEFAULT_PORT),
    };
    if host.is_empty() {
        return Err(TargetError::NoHost);
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok((Host::Ip(IpAddr::V4(ip)), port));
    }
    if !is_host_name(host) {
        return Err(TargetError::BadHost(host.to_string()));
    }
    Ok((Host::Name(host.to_ascii_lowercase()), port))
}

fn parse_port(port: &str) -> Result<u16, TargetError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(TargetError::BadPort(port.to_string())),
    }
}

/// Host names as resolvers accept them: dot-separated labels of letters, digits, '-' and '_',
/// each 1–63 characters, not starting or ending with '-', 253 characters in all. A name made
/// only of digits and dots is a malformed IPv4 address, not a name.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(aet) = &self.called_aet {
            write!(f, "{aet}@")?;
        }
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn aet(s: &str) -> Option<AeTitle> {
        Some(AeTitle::new(s).expect("valid title in test"))
    }

    #[test]
    fn parses_good_targets() {
        let cases = [
            (
                "ARCHIMED@10.100.10.10:104",
                aet("ARCHIMED"),
                Host::Ip(IpAddr::V4(Ipv4Addr::new(10, 100, 10, 10))),
                104,
            ),
            (
                "STORE@pacs.example.org:11112",
                aet("STORE"),
                Host::Name("pacs.example.org".into()),
                11112,
            ),
            (
                "DEST@[2001:db8::5]:104",
                aet("DEST"),
                Host::Ip(IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().unwrap())),
                104,
            ),
            (
                "DEST@[::1]",
                aet("DEST"),
                Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                104,
            ),
            (
                "ORTHANC@127.0.0.1",
                aet("ORTHANC"),
                Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                104,
            ),
            (
                "127.0.0.1:4242",
                None,
                Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                4242,
            ),
            (
                "Pacs1.Hospital.Example",
                None,
                Host::Name("pacs1.hospital.example".into()),
                104,
            ),
            (
                "A@B@localhost:1",
                aet("A@B"),
                Host::Name("localhost".into()),
                1,
            ),
            (
                "MY AE@localhost:65535",
                aet("MY AE"),
                Host::Name("localhost".into()),
                65535,
            ),
            (
                "SIXTEEN_CHARS_AE@h_1:5",
                aet("SIXTEEN_CHARS_AE"),
                Host::Name("h_1".into()),
                5,
            ),
        ];
        for (text, called_aet, host, port) in cases {
            let target = Target::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                target,
                Target {
                    called_aet,
                    host,
                    port
                },
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bad_targets() {
        use TargetError::*;
        let cases: &[(&str, TargetError)] = &[
            ("", Empty),
            ("@127.0.0.1", AeTitleError::Empty.into()),
            (
                "SEVENTEEN_CHARS_A@127.0.0.1",
                AeTitleError::TooLong(17).into(),
            ),
            ("A\\B@127.0.0.1", AeTitleError::Backslash.into()),
            ("    @127.0.0.1", AeTitleError::AllSpaces.into()),
            ("A\tB@127.0.0.1", AeTitleError::BadCharacter('\t').into()),
            ("ÄRZTE@127.0.0.1", AeTitleError::BadCharacter('Ä').into()),
            ("AE@", NoHost),
            ("AE@:104", NoHost),
            ("AE@host:", BadPort("".into())),
            ("AE@host:0", BadPort("0".into())),
            ("AE@host:65536", BadPort("65536".into())),
            ("AE@host:+104", BadPort("+104".into())),
            ("AE@host:abc", BadPort("abc".into())),
            ("AE@::1", Ipv6WithoutBrackets),
            ("AE@2001:db8::5:104", Ipv6WithoutBrackets),
            ("AE@[::1", BadIpv6("[::1".into())),
            ("AE@[nonsense]:104", BadIpv6("nonsense".into())),
            ("AE@[::1]104", BadIpv6("[::1]104".into())),
            ("AE@host name", BadHost("host name".into())),
            ("AE@http://host", BadPort("//host".into())),
            ("AE@-host.example", BadHost("-host.example".into())),
            ("AE@host..example", BadHost("host..example".into())),
            ("AE@999.1.1.1", BadHost("999.1.1.1".into())),
            ("AE@host/path:104", BadHost("host/path".into())),
        ];
        for (text, want) in cases {
            assert_eq!(Target::parse(text).as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn displays_round_trip() {
        for text in ["A@127.0.0.1:104", "B@[::1]:11112", "pacs.example:4242"] {
            let target = Target::parse(text).unwrap();
            assert_eq!(target.to_string(), text);
            assert_eq!(Target::parse(&target.to_string()).unwrap(), target);
        }
    }
}
