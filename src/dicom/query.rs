//! C-FIND identifiers built from modules.yml: DICOM keywords to tags, `today` to a date.
//!
//! A query in the config is a map of keywords to values (`StudyDate: today`,
//! `ModalitiesInStudy: CT`); an empty value asks for the attribute without matching on it; a
//! nested map becomes a sequence with one item (`ScheduledProcedureStepSequence: {Modality: MR}`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntryRef, TagRange};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

/// A value in a config query.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum QueryValue {
    Text(String),
    Integer(i64),
    Sequence(BTreeMap<String, Option<QueryValue>>),
}

pub type QueryKeys = BTreeMap<String, Option<QueryValue>>;

/// A query key that cannot be sent as written; the message names the keyword.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{0:?} is not a DICOM keyword")]
    NotAKeyword(String),
    #[error("{0:?} names a range of tags, not one attribute")]
    TagRange(String),
    #[error("{0} is not a sequence")]
    NotASequence(String),
    #[error("{0} is a sequence: give it a map of keywords")]
    IsASequence(String),
    #[error(
        "{key}: {value:?} is not a DICOM date: write YYYYMMDD, a range YYYYMMDD-YYYYMMDD \
         (either end may be left out), today or yesterday"
    )]
    NotADate { key: String, value: String },
}

impl KeyError {
    /// The same error, about a key of the item of sequence `sequence`: its key becomes
    /// `sequence.key`.
    fn within(self, sequence: &str) -> KeyError {
        let nest = |key: String| format!("{sequence}.{key}");
        match self {
            KeyError::NotAKeyword(key) => KeyError::NotAKeyword(nest(key)),
            KeyError::TagRange(key) => KeyError::TagRange(nest(key)),
            KeyError::NotASequence(key) => KeyError::NotASequence(nest(key)),
            KeyError::IsASequence(key) => KeyError::IsASequence(nest(key)),
            KeyError::NotADate { key, value } => KeyError::NotADate {
                key: nest(key),
                value,
            },
        }
    }

    /// The key the error is about, as written; a key of a sequence's item as `sequence.key`.
    pub fn key(&self) -> &str {
        match self {
            KeyError::NotAKeyword(key)
            | KeyError::TagRange(key)
            | KeyError::NotASequence(key)
            | KeyError::IsASequence(key)
            | KeyError::NotADate { key, .. } => key,
        }
    }
}

/// Finds a keyword's tag and VR in the standard dictionary.
pub fn keyword(name: &str) -> Result<(Tag, VR), KeyError> {
    let entry: &DataDictionaryEntryRef = StandardDataDictionary
        .by_name(name)
        .ok_or_else(|| KeyError::NotAKeyword(name.to_string()))?;
    match entry.tag {
        TagRange::Single(tag) => Ok((tag, entry.vr.relaxed())),
        _ => Err(KeyError::TagRange(name.to_string())),
    }
}

/// Checks every keyword of a query (and of its sequences).
pub fn validate(keys: &QueryKeys) -> Result<(), KeyError> {
    for (name, value) in keys {
        let (_, vr) = keyword(name)?;
        match value {
            Some(QueryValue::Sequence(items)) if vr == VR::SQ => {
                validate(items).map_err(|e| e.within(name))?
            }
            Some(QueryValue::Sequence(_)) => return Err(KeyError::NotASequence(name.clone())),
            Some(_) if vr == VR::SQ => return Err(KeyError::IsASequence(name.clone())),
            Some(QueryValue::Text(text)) if vr == VR::DA => date_match(name, text)?,
            Some(QueryValue::Integer(n)) if vr == VR::DA => date_match(name, &n.to_string())?,
            _ => {}
        }
    }
    Ok(())
}

/// `text` as the value of DA key `key`: refused unless [`is_date_match`].
fn date_match(key: &str, text: &str) -> Result<(), KeyError> {
    if is_date_match(text) {
        Ok(())
    } else {
        Err(KeyError::NotADate {
            key: key.to_string(),
            value: text.to_string(),
        })
    }
}

/// Whether `text` is what a DA key of a C-FIND may hold (PS3.4 C.2.2.2): empty (return the
/// attribute), a date, or a range with one end or both, each end a YYYYMMDD calendar date
/// or `today` or `yesterday`, which [`apply`] turns into dates.
fn is_date_match(text: &str) -> bool {
    let is_date = |part: &str| {
        let part = part.trim();
        matches!(part, "today" | "yesterday")
            || (part.len() == 8
                && part.bytes().all(|b| b.is_ascii_digit())
                && NaiveDate::parse_from_str(part, "%Y%m%d").is_ok())
    };
    match text.split_once('-') {
        None => text.trim().is_empty() || is_date(text),
        Some((from, to)) => {
            let (from, to) = (from.trim(), to.trim());
            !(from.is_empty() && to.is_empty())
                && (from.is_empty() || is_date(from))
                && (to.is_empty() || is_date(to))
        }
    }
}

/// The SpecificCharacterSet every identifier declares when its keys are all ASCII.
///
/// Latin-1 rather than no SpecificCharacterSet at all: an identifier without one is read in
/// the archive's own default, and an archive whose default is not ASCII-compatible at 0x5C
/// (Orthanc with `DefaultEncoding: Japanese` reads ISO_IR 13, where 0x5C is the yen sign)
/// then takes a StudyInstanceUID list `a\b\c` for one odd value that matches nothing. With a
/// set declared, `\` is the value delimiter again. Latin-1 is true of what we send (UIDs,
/// dates, numbers and ASCII keys are all in ISO 8859-1), and it is the explicit set every
/// character-set-aware archive supports. An archive may answer in the set a query declares
/// (dcmqrscp converts the text of a match when it fits, and leaves it as stored otherwise);
/// matches are decoded per their own SpecificCharacterSet either way.
pub const ASCII_CHARACTER_SET: &str = "ISO_IR 100";

/// The SpecificCharacterSet of an identifier whose keys hold non-ASCII text: UTF-8, the one
/// set that holds any text a module may give.
pub const UTF8_CHARACTER_SET: &str = "ISO_IR 192";

/// The SpecificCharacterSet an identifier built from `keys` declares: the one place it is
/// chosen. [`ASCII_CHARACTER_SET`] unless some text value, at any depth, is not ASCII.
pub fn character_set(keys: &QueryKeys) -> &'static str {
    if keys.values().flatten().all(is_ascii) {
        ASCII_CHARACTER_SET
    } else {
        UTF8_CHARACTER_SET
    }
}

fn is_ascii(value: &QueryValue) -> bool {
    match value {
        QueryValue::Text(text) => text.is_ascii(),
        QueryValue::Integer(_) => true,
        QueryValue::Sequence(keys) => keys.values().flatten().all(is_ascii),
    }
}

/// Adds the query's keys to `identifier`, `today` in DA attributes read as `today`'s date,
/// and the SpecificCharacterSet of [`character_set`] (replacing one the keys may name: the
/// identifier is encoded in the set it declares).
pub fn apply(identifier: &mut InMemDicomObject, keys: &QueryKeys, today: NaiveDate) {
    for (name, value) in keys {
        let Ok((tag, vr)) = keyword(name) else {
            continue;
        };
        identifier.put(element(tag, vr, value.as_ref(), today));
    }
    identifier.put(text_element(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        character_set(keys),
    ));
}

fn element(
    tag: Tag,
    vr: VR,
    value: Option<&QueryValue>,
    today: NaiveDate,
) -> DataElement<InMemDicomObject> {
    match value {
        None => text_element(tag, vr, ""),
        Some(QueryValue::Integer(n)) => text_element(tag, vr, &n.to_string()),
        Some(QueryValue::Text(text)) => {
            let text = if vr == VR::DA {
                resolve_dates(text, today)
            } else {
                text.clone()
            };
            text_element(tag, vr, &text)
        }
        Some(QueryValue::Sequence(keys)) => {
            let mut item = InMemDicomObject::new_empty();
            for (name, value) in keys {
                let Ok((tag, vr)) = keyword(name) else {
                    continue;
                };
                item.put(element(tag, vr, value.as_ref(), today));
            }
            DataElement::new(
                tag,
                VR::SQ,
                DataSetSequence::new(vec![item], Length::UNDEFINED),
            )
        }
    }
}

/// `today` and `yesterday` in a date or date range become dates: `today`, `yesterday-today`.
fn resolve_dates(text: &str, today: NaiveDate) -> String {
    let yesterday = today.pred_opt().unwrap_or(today);
    text.split('-')
        .map(|part| match part.trim() {
            "today" => today.format("%Y%m%d").to_string(),
            "yesterday" => yesterday.format("%Y%m%d").to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Builds an identifier element from a keyword's VR and a text value ("" for a return key).
pub fn text_element(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    if value.is_empty() {
        return DataElement::new(tag, vr, PrimitiveValue::Empty);
    }
    let value = if vr == VR::UI {
        super::message::uid_value(value)
    } else {
        value.to_string()
    };
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// A text attribute of a parsed data set (the demo SCP reads requests this way), trimmed of
/// padding; `None` when absent, empty or undecodable.
pub fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = object.get(tag)?.to_str().ok()?;
    let value = value.trim_matches(|c: char| c == '\0' || c == ' ');
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_keys_take_dates_ranges_and_today_only() {
        for good in [
            "",
            "20261204",
            "20261201-20261204",
            "-20261204",
            "20261204-",
            "today",
            "yesterday-today",
            "yesterday - today",
            "20240229",
        ] {
            assert!(is_date_match(good), "{good:?} is a date match");
        }
        for bad in [
            "tomorrow",
            "2026-12-04",
            "20261304",
            "20230229",
            "2026120",
            "-",
            "20261204-20261205-20261206",
            "20261204\\20261205",
            "2026 104",
            "20261 04-",
        ] {
            assert!(!is_date_match(bad), "{bad:?} is not a date match");
        }
        let keys: QueryKeys = [("StudyDate".to_string(), Some(QueryValue::Integer(20261304)))]
            .into_iter()
            .collect();
        assert!(matches!(validate(&keys), Err(KeyError::NotADate { .. })));
    }

    #[test]
    fn keywords_and_dates() {
        assert_eq!(keyword("StudyDate").unwrap(), (tags::STUDY_DATE, VR::DA));
        assert_eq!(
            keyword("StudyDat"),
            Err(KeyError::NotAKeyword("StudyDat".into()))
        );
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        assert_eq!(resolve_dates("today", today), "20261125");
        assert_eq!(resolve_dates("yesterday-today", today), "20261124-20261125");
        assert_eq!(resolve_dates("20260101-", today), "20260101-");
    }

    #[test]
    fn character_set_is_latin1_for_ascii_keys_and_utf8_otherwise() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let declared = |yaml: &str| {
            let keys: QueryKeys = yaml_serde::from_str(yaml).unwrap();
            let mut identifier = InMemDicomObject::new_empty();
            apply(&mut identifier, &keys, today);
            let declared = super::text(&identifier, tags::SPECIFIC_CHARACTER_SET);
            assert_eq!(declared.as_deref(), Some(character_set(&keys)), "{yaml}");
            character_set(&keys)
        };
        assert_eq!(declared("{}"), "ISO_IR 100");
        assert_eq!(
            declared("{StudyDate: today, ModalitiesInStudy: CT, NumberOfStudyRelatedInstances: 3, PatientName: }"),
            "ISO_IR 100"
        );
        assert_eq!(declared("PatientName: Müller^Jürgen"), "ISO_IR 192");
        assert_eq!(
            declared(
                "ScheduledProcedureStepSequence: {ScheduledPerformingPhysicianName: 山田^太郎}"
            ),
            "ISO_IR 192"
        );
        // A set named in the module's keys gives way to the one the identifier is encoded in.
        assert_eq!(declared("SpecificCharacterSet: ISO_IR 144"), "ISO_IR 100");
        assert_eq!(
            declared("{SpecificCharacterSet: ISO_IR 100, PatientName: Иванов}"),
            "ISO_IR 192"
        );
    }

    #[test]
    fn sequences_must_be_maps() {
        let keys: QueryKeys = yaml_serde::from_str("ScheduledProcedureStepSequence: MR").unwrap();
        assert!(validate(&keys).is_err());
        let keys: QueryKeys = yaml_serde::from_str(
            "ScheduledProcedureStepSequence: {Modality: MR, ScheduledStationAETitle: }",
        )
        .unwrap();
        validate(&keys).unwrap();
        let mut identifier = InMemDicomObject::new_empty();
        apply(
            &mut identifier,
            &keys,
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        );
        let items = identifier
            .get(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
            .and_then(|e| e.items())
            .expect("a sequence");
        assert_eq!(items.len(), 1);
        assert_eq!(
            super::text(&items[0], tags::MODALITY).as_deref(),
            Some("MR")
        );
    }
}
