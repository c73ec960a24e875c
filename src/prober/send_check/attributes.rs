//! `compare_attributes`, pure: the values a study has on each side, and when they differ.
//!
//! A study both sides hold is *mismatched* when one of the listed attributes has a known value
//! on each side and the two differ under these rules, chosen so that no archive's habits read
//! as a misfiled study:
//! - spaces around a value (and around each of several values) are padding, not content;
//! - a value one side does not return, or returns empty, is unknown: never a mismatch (archives
//!   answer a key they do not keep with an empty value);
//! - person names (PN) are compared component by component (family, given, middle, prefix,
//!   suffix) after decoding, trailing empty components dropped (`DOE^JOHN` is `DOE^JOHN^^^`);
//!   a group of representations (alphabetic, ideographic, phonetic) is compared only where both
//!   sides have it;
//! - dates (DA), times (TM) and numbers (DS, IS) are compared as what they mean (`20261204` is
//!   `2026.12.04`, `101500` is `101500.000`, `1.50` is `1.5`);
//! - several values are compared as a set, in any order;
//! - with `compare_ignore_case`, letter case does not count.
//!
//! What the destination showed of its studies is kept in [`Seen`], whatever query showed it.

use std::collections::HashMap;

use dicom_core::{Tag, VR};

use super::plan::uid_key;
use crate::dicom::query;
use crate::dicom::study::{parse_date, parse_time};

/// The attributes a module compares, in its order: keyword, tag and VR.
#[derive(Clone, Debug, Default)]
pub(super) struct Compared {
    pub keywords: Vec<String>,
    pub keys: Vec<(Tag, VR)>,
    pub ignore_case: bool,
}

impl Compared {
    /// The module's `compare_attributes` (checked by the loader: every keyword is known).
    pub fn new(keywords: &[String], ignore_case: bool) -> Compared {
        let (keywords, keys) = keywords
            .iter()
            .filter_map(|k| query::keyword(k).ok().map(|key| (k.clone(), key)))
            .unzip();
        Compared {
            keywords,
            keys,
            ignore_case,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The attributes whose values differ between `here` (the source's) and `there` (one
    /// record of the destination's), by index.
    pub fn differences(&self, here: &[Option<Box<str>>], there: &[Option<Box<str>>]) -> Vec<usize> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(i, (_, vr))| {
                let (a, b) = (value(here, *i), value(there, *i));
                differ(*vr, a, b, self.ignore_case) == Some(true)
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// The `index`th value of a record, if known.
fn value(record: &[Option<Box<str>>], index: usize) -> Option<&str> {
    record.get(index).and_then(|v| v.as_deref())
}

/// Whether two values of an attribute of `vr` differ; `None` when either is unknown (absent
/// or empty).
pub(super) fn differ(
    vr: VR,
    here: Option<&str>,
    there: Option<&str>,
    ignore_case: bool,
) -> Option<bool> {
    let (here, there) = (here?, there?);
    let values = |text: &str| -> Vec<String> {
        text.split('\\')
            .map(|v| {
                let v = v.trim_matches(|c: char| c == ' ' || c == '\0');
                if ignore_case {
                    v.to_lowercase()
                } else {
                    v.to_string()
                }
            })
            .collect()
    };
    let (mut here, mut there) = (values(here), values(there));
    if here.iter().all(String::is_empty) || there.iter().all(String::is_empty) {
        return None;
    }
    if here.len() != there.len() {
        return Some(true);
    }
    // Several values are a set: archives keep them in their own order.
    if here.len() > 1 {
        here.sort();
        there.sort();
    }
    let mut known = false;
    for (a, b) in here.iter().zip(&there) {
        let same = match vr {
            VR::PN => person_names_match(a, b),
            VR::DA => same_when_read(a, b, parse_date),
            VR::TM => same_when_read(a, b, parse_time),
            VR::DS | VR::IS => same_when_read(a, b, |n| n.parse::<f64>().ok()),
            _ => Some(a == b),
        };
        match same {
            Some(false) => return Some(true),
            Some(true) => known = true,
            None => {}
        }
    }
    known.then_some(false)
}

/// Whether two values are the same once read by `read` (a date, a time, a number); as text
/// when either cannot be read.
fn same_when_read<T: PartialEq>(
    a: &str,
    b: &str,
    read: impl Fn(&str) -> Option<T>,
) -> Option<bool> {
    match (read(a), read(b)) {
        (Some(x), Some(y)) => Some(x == y),
        _ => Some(a == b),
    }
}

/// Whether two person names match, group by group where both have the group; `None` when no
/// group is on both sides.
fn person_names_match(a: &str, b: &str) -> Option<bool> {
    let components = |group: &str| -> Vec<String> {
        let mut parts: Vec<String> = group
            .split('^')
            .map(|c| c.trim_matches(' ').to_string())
            .collect();
        while parts.last().is_some_and(String::is_empty) {
            parts.pop();
        }
        parts
    };
    let mut known = None;
    for (ga, gb) in a.split('=').zip(b.split('=')) {
        let (ca, cb) = (components(ga), components(gb));
        if ca.is_empty() || cb.is_empty() {
            continue;
        }
        if ca != cb {
            return Some(false);
        }
        known = Some(true);
    }
    known
}

/// The values of the compared attributes one match showed, in the module's order.
pub(super) type Record = Box<[Option<Box<str>>]>;

/// What the destination showed of each study's compared attributes: one record per distinct
/// set of values (a study filed twice may show two).
#[derive(Debug, Default)]
pub(super) struct Seen {
    by_uid: HashMap<u128, Vec<Record>>,
}

impl Seen {
    /// Records what one match showed of `uid`.
    pub fn record(&mut self, uid: &str, values: Vec<Option<String>>) {
        if uid.is_empty() || values.iter().all(Option::is_none) {
            return;
        }
        let values: Record = values
            .into_iter()
            .map(|v| v.map(String::into_boxed_str))
            .collect();
        let records = self.by_uid.entry(uid_key(uid)).or_default();
        if !records.contains(&values) {
            records.push(values);
        }
    }

    /// The records of `uid`: none when no answer showed a value of it.
    pub fn get(&self, uid: &str) -> &[Record] {
        self.by_uid.get(&uid_key(uid)).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_differ_and_values_that_only_look_different() {
        // VR, the source's value, the destination's, ignore_case, and whether they differ.
        type Case = (
            VR,
            Option<&'static str>,
            Option<&'static str>,
            bool,
            Option<bool>,
        );
        let cases: [Case; 20] = [
            (VR::LO, Some("PAT001"), Some("PAT001"), false, Some(false)),
            (VR::LO, Some("PAT001"), Some("PAT002"), false, Some(true)),
            // Padding is not content.
            (VR::LO, Some("PAT001  "), Some("PAT001"), false, Some(false)),
            (VR::SH, Some("ACC 1 "), Some("ACC 1"), false, Some(false)),
            // Unknown on either side is never a mismatch.
            (VR::LO, None, Some("PAT001"), false, None),
            (VR::LO, Some("PAT001"), None, false, None),
            (VR::LO, Some("PAT001"), Some("  "), false, None),
            // Case.
            (VR::LO, Some("pat001"), Some("PAT001"), false, Some(true)),
            (VR::LO, Some("pat001"), Some("PAT001"), true, Some(false)),
            // Names, component by component.
            (
                VR::PN,
                Some("DOE^JOHN"),
                Some("DOE^JOHN^^^"),
                false,
                Some(false),
            ),
            (
                VR::PN,
                Some("DOE^JOHN "),
                Some("DOE ^JOHN"),
                false,
                Some(false),
            ),
            (
                VR::PN,
                Some("DOE^JOHN"),
                Some("DOE^JANE"),
                false,
                Some(true),
            ),
            (
                VR::PN,
                Some("Doe^John"),
                Some("DOE^JOHN"),
                true,
                Some(false),
            ),
            (
                VR::PN,
                Some("Yamada^Tarou=山田^太郎"),
                Some("Yamada^Tarou"),
                false,
                Some(false),
            ),
            (
                VR::PN,
                Some("Yamada^Tarou=山田^太郎"),
                Some("Yamada^Tarou=山田^次郎"),
                false,
                Some(true),
            ),
            (
                VR::PN,
                Some("=山田^太郎"),
                Some("Yamada^Tarou"),
                false,
                None,
            ),
            // Dates as dates.
            (
                VR::DA,
                Some("20261204"),
                Some("2026.12.04"),
                false,
                Some(false),
            ),
            (
                VR::DA,
                Some("20261204"),
                Some("20261205"),
                false,
                Some(true),
            ),
            // Several values.
            (VR::CS, Some("CT\\MR"), Some("CT \\MR"), false, Some(false)),
            (VR::CS, Some("CT\\MR"), Some("CT"), false, Some(true)),
        ];
        for (vr, here, there, ignore_case, want) in cases {
            assert_eq!(
                differ(vr, here, there, ignore_case),
                want,
                "{vr:?} {here:?} {there:?} ignore_case={ignore_case}"
            );
        }
    }

    #[test]
    fn differences_name_the_attributes_by_index() {
        let keywords = ["PatientID", "AccessionNumber", "PatientBirthDate"].map(String::from);
        let compared = Compared::new(&keywords, false);
        let values = |v: [Option<&str>; 3]| -> Vec<Option<Box<str>>> {
            v.iter().map(|v| v.map(Box::from)).collect()
        };
        let here = values([Some("P1"), Some("A1"), Some("19800101")]);
        assert!(compared.differences(&here, &here).is_empty());
        let there = values([Some("P2"), None, Some("19800102")]);
        assert_eq!(compared.differences(&here, &there), [0, 2]);
    }

    #[test]
    fn seen_keeps_each_distinct_record_of_a_study() {
        let mut seen = Seen::default();
        seen.record("1.2.3", vec![Some("P1".into())]);
        seen.record("1.2.3", vec![Some("P1".into())]);
        seen.record("1.2.3", vec![Some("P9".into())]);
        seen.record("1.2.4", vec![None]);
        assert_eq!(seen.get("1.2.3").len(), 2);
        assert!(seen.get("1.2.4").is_empty());
        assert!(seen.get("1.2.5").is_empty());
    }
}
