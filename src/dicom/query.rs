//! C-FIND identifiers built from modules.yml: DICOM keywords to tags, `today` to a date.
//!
//! A query in the config is a map of keywords to values (`StudyDate: today`,
//! `ModalitiesInStudy: CT`); an empty value asks for the attribute without matching on it; a
//! nested map becomes a sequence with one item (`ScheduledProcedureStepSequence: {Modality: MR}`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntryRef, TagRange};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

use super::find::text_element;

/// A value in a config query.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum QueryValue {
    Text(String),
    Integer(i64),
    Sequence(BTreeMap<String, Option<QueryValue>>),
}

pub type QueryKeys = BTreeMap<String, Option<QueryValue>>;

/// Finds a keyword's tag and VR in the standard dictionary.
pub fn keyword(name: &str) -> Result<(Tag, VR), String> {
    let entry: &DataDictionaryEntryRef = StandardDataDictionary
        .by_name(name)
        .ok_or_else(|| format!("{name:?} is not a DICOM keyword"))?;
    match entry.tag {
        TagRange::Single(tag) => Ok((tag, entry.vr.relaxed())),
        _ => Err(format!("{name:?} names a range of tags, not one attribute")),
    }
}

/// Checks every keyword of a query (and of its sequences); the error names the keyword.
pub fn validate(keys: &QueryKeys) -> Result<(), String> {
    for (name, value) in keys {
        let (_, vr) = keyword(name)?;
        match value {
            Some(QueryValue::Sequence(items)) if vr == VR::SQ => validate(items)?,
            Some(QueryValue::Sequence(_)) => return Err(format!("{name} is not a sequence")),
            Some(_) if vr == VR::SQ => {
                return Err(format!("{name} is a sequence: give it a map of keywords"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Adds the query's keys to `identifier`, `today` in DA attributes read as `today`'s date.
pub fn apply(identifier: &mut InMemDicomObject, keys: &QueryKeys, today: NaiveDate) {
    let mut utf8 = false;
    for (name, value) in keys {
        let Ok((tag, vr)) = keyword(name) else {
            continue;
        };
        identifier.put(element(tag, vr, value.as_ref(), today, &mut utf8));
    }
    if utf8 {
        identifier.put(text_element(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            "ISO_IR 192",
        ));
    }
}

fn element(
    tag: Tag,
    vr: VR,
    value: Option<&QueryValue>,
    today: NaiveDate,
    utf8: &mut bool,
) -> DataElement<InMemDicomObject> {
    match value {
        None => text_element(tag, vr, ""),
        Some(QueryValue::Integer(n)) => text_element(tag, vr, &n.to_string()),
        Some(QueryValue::Text(text)) => {
            *utf8 |= !text.is_ascii();
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
                item.put(element(tag, vr, value.as_ref(), today, utf8));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_dates() {
        assert_eq!(keyword("StudyDate").unwrap(), (tags::STUDY_DATE, VR::DA));
        assert!(keyword("StudyDat").is_err());
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        assert_eq!(resolve_dates("today", today), "20261125");
        assert_eq!(resolve_dates("yesterday-today", today), "20261124-20261125");
        assert_eq!(resolve_dates("20260101-", today), "20260101-");
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
            super::super::find::text(&items[0], tags::MODALITY).as_deref(),
            Some("MR")
        );
    }
}
