//! Durations as Prometheus writes them (`500ms`, `10s`, `1m30s`, `24h`, `7d`): read from
//! modules.yml and from the command line's duration flags, written back the same way.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration written as Prometheus writes them: `500ms`, `10s`, `1m30s`, `24h`, `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PromDuration(pub Duration);

/// Text that is not a duration as Prometheus writes them (or one too long to hold).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected e.g. 500ms, 10s, 1m30s, 24h")]
pub struct InvalidDuration(pub String);

/// Prometheus' duration units and their milliseconds, largest first: read in this order
/// (each at most once) and written in it.
const UNITS: [(&str, u64); 7] = [
    ("y", 31_536_000_000),
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl PromDuration {
    pub fn parse(text: &str) -> Result<PromDuration, InvalidDuration> {
        let bad = || InvalidDuration(text.to_string());
        if text == "0" {
            return Ok(PromDuration(Duration::ZERO));
        }
        if text.is_empty() {
            return Err(bad());
        }
        let mut rest = text;
        let mut total: u64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let letters = rest[digits..]
                .bytes()
                .take_while(u8::is_ascii_alphabetic)
                .count();
            if digits == 0 || letters == 0 {
                return Err(bad());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = &rest[digits..digits + letters];
            let index = UNITS[next_unit..]
                .iter()
                .position(|(name, _)| *name == unit)
                .ok_or_else(bad)?
                + next_unit;
            next_unit = index + 1;
            total = value
                .checked_mul(UNITS[index].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            rest = &rest[digits + letters..];
        }
        Ok(PromDuration(Duration::from_millis(total)))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            let size = u128::from(size);
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PromDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_prometheus() {
        let ok = [
            ("0", 0),
            ("500ms", 500),
            ("10s", 10_000),
            ("1m30s", 90_000),
            ("24h", 86_400_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1h0m5s10ms", 3_605_010),
        ];
        for (text, ms) in ok {
            assert_eq!(
                PromDuration::parse(text),
                Ok(PromDuration(Duration::from_millis(ms))),
                "{text}"
            );
        }
        for text in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10 s",
            "5s1m",
            "1s1s",
            "10sec",
            "1x",
            "99999999999999999999y",
        ] {
            assert_eq!(
                PromDuration::parse(text),
                Err(InvalidDuration(text.to_string())),
                "{text:?} should be refused"
            );
        }
        for text in ["500ms", "10s", "1m30s", "1d", "1h5s10ms"] {
            assert_eq!(PromDuration::parse(text).unwrap().to_string(), text);
        }
    }
}
