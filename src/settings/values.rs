//! Values any prober's options may hold, parsed when the config is read: a target
//! (`AET@host:port`) and a time zone. They live with the config, not with one prober, because
//! they are words of the file's language: a prober that needs a second peer or a local day
//! reuses them, and the error a bad one gives reads the same in every block.

use serde::{Deserialize, Serialize};

use crate::target::Target;

/// A target written in the config (`AET@host:port`), parsed when the config is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec(pub Target);

impl<'de> Deserialize<'de> for TargetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Target::parse(&text)
            .map(TargetSpec)
            .map_err(|e| serde::de::Error::custom(format!("invalid target {text:?}: {e}")))
    }
}

impl Serialize for TargetSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// An IANA time zone name (`Europe/Moscow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| serde::de::Error::custom(format!("unknown time zone {text:?}")))
    }
}

impl Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}
