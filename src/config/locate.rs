//! Where a key is in modules.yml: errors found after parsing (a check across keys, a query
//! keyword, an `allowed_targets` entry) name their key, and the operator is told its line too.
//!
//! The YAML library gives lines only for errors raised while it reads, so the text is read a
//! second time, following the key path, and an error is raised on the node the path ends at;
//! the library's location for it is the node's.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The line and column (from 1) of the node at `path` (mapping keys, or sequence indices as
/// numbers) in `text`; where the path goes further than the text, those of the deepest node
/// it has.
pub(super) fn locate(text: &str, path: &[String]) -> Option<(usize, usize)> {
    (1..=path.len()).rev().find_map(|depth| {
        let seek = Seek {
            path: &path[..depth],
        };
        let error = seek
            .deserialize(yaml_serde::Deserializer::from_str(text))
            .err()?;
        // The library puts its own path before the message and the location after it.
        let message = error.to_string();
        let message = message.split(" at line ").next().unwrap_or_default();
        if message != HERE && !message.ends_with(&format!(": {HERE}")) {
            return None;
        }
        error.location().map(|l| (l.line(), l.column()))
    })
}

/// The message of the error raised on the node sought.
const HERE: &str = "the node sought";

/// Follows `path` from the node it is given.
struct Seek<'p> {
    path: &'p [String],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        while let Some(key) = map.next_key::<Key>()? {
            if key.0 == *first {
                return map.next_value_seed(Seek { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        let Ok(index) = first.parse::<usize>() else {
            return Ok(());
        };
        for _ in 0..index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek { path: rest }).map(|_| ())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

impl Seek<'_> {
    /// A scalar is the node sought when the path ends here; a path cannot go through it.
    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(HERE))
        } else {
            Ok(())
        }
    }
}

/// A mapping key, whatever scalar it is written as.
struct Key(String);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key(String::new()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::locate;

    fn at(text: &str, path: &str) -> Option<(usize, usize)> {
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        locate(text, &path)
    }

    const TEXT: &str = "\
allowed_targets: [10.0.0.0/8, pacs.example]
modules:
  f:
    prober: find
    find:
      query: { StudyDat: today }
  s:
    prober: send_check
    send_check:
      destination: A@127.0.0.1:104
      grace: 2h
";

    #[test]
    fn finds_block_and_flow_keys_and_sequence_entries() {
        assert_eq!(at(TEXT, "modules.f.find.query").map(|l| l.0), Some(6));
        assert_eq!(
            at(TEXT, "modules.f.find.query.StudyDat").map(|l| l.0),
            Some(6)
        );
        assert_eq!(
            at(TEXT, "modules.s.send_check.grace").map(|l| l.0),
            Some(11)
        );
        assert_eq!(at(TEXT, "allowed_targets.1").map(|l| l.0), Some(1));
    }

    #[test]
    fn a_key_the_text_lacks_is_placed_at_its_deepest_parent() {
        assert_eq!(
            at(TEXT, "modules.s.send_check.lookback").map(|l| l.0),
            Some(10)
        );
        assert_eq!(at(TEXT, "modules.f.timeout").map(|l| l.0), Some(4));
        assert_eq!(at("", "modules.f"), None);
    }
}
