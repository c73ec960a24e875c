//! Study-level C-FIND in the probers' words: ask for studies (a date range or a list of
//! UIDs, plus a module's extra keys) and get typed matches back.
//!
//! A [`StudyMatch`] carries what a transfer check needs: the StudyInstanceUID, StudyDate and
//! StudyTime parsed (with the TimezoneOffsetFromUTC when the peer gives one), the instance
//! count, and text decoded per the match's SpecificCharacterSet. Tags, VRs and encodings stay
//! in this layer; whether an answer is complete is [`FindAnswer::completeness`]'s to say.

use chrono::{FixedOffset, NaiveDate, NaiveTime};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use super::charset::CharacterSets;
use super::find::{find, FindAnswer, Identifier, InformationModel};
use super::guard::RawElement;
use super::query::text_element;
use super::query::QueryKeys;
use super::{Association, Error};

/// Which studies a query selects.
#[derive(Clone, Copy, Debug)]
pub enum StudySelection<'a> {
    /// StudyDate from `from`, up to `to` or, without it, open-ended.
    Dates {
        from: NaiveDate,
        to: Option<NaiveDate>,
    },
    /// StudyInstanceUID list matching (one UID: single value matching).
    Uids(&'a [&'a str]),
}

/// One study-level query.
#[derive(Clone, Copy, Debug)]
pub struct StudyQuery<'a> {
    pub selection: StudySelection<'a>,
    /// Ask for what describes the study (time, patient, IDs, modalities, character set);
    /// without it only the UID and the instance count come back.
    pub details: bool,
    /// Ask for TimezoneOffsetFromUTC too. It costs some archives dearly: Orthanc does not
    /// index it and reads every study's files from storage to answer it (a source query of
    /// 2,000 studies took three times as long).
    pub timezone_offset: bool,
    /// A module's extra keys, with the date `today` in them means.
    pub extra: Option<(&'a QueryKeys, NaiveDate)>,
    /// Attributes asked for to be compared between two archives (`compare_attributes`),
    /// read into [`StudyMatch::compared`] in this order.
    pub compare: &'a [(Tag, VR)],
}

/// One study as a peer reported it. Text is decoded, trimmed and never empty (`None` instead).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StudyMatch {
    /// Empty when the peer sent none (such a match cannot be compared).
    pub uid: String,
    pub date: Option<NaiveDate>,
    pub time: Option<NaiveTime>,
    /// TimezoneOffsetFromUTC, when the peer gives one: the zone of `date` and `time`.
    pub timezone_offset: Option<FixedOffset>,
    pub instances: Option<u64>,
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    pub study_id: Option<String>,
    pub accession_number: Option<String>,
    /// ModalitiesInStudy, values joined with `\`.
    pub modalities: Option<String>,
    /// StudyDate as sent, for a label that asks for it.
    pub study_date: Option<String>,
    /// SpecificCharacterSet terms this layer could not decode with (the text fell back to the
    /// default repertoire).
    pub unknown_character_sets: Vec<String>,
    /// Whether NumberOfStudyRelatedInstances was sent but is no count an archive could hold
    /// (`instances` is then `None`).
    pub absurd_count: bool,
    /// The values of the query's `compare` attributes, decoded and trimmed, in its order.
    pub compared: Vec<Option<String>>,
}

/// Return keys of a detailed query: everything a transfer check reads, because a PACS such
/// as Orthanc returns only what was asked. SpecificCharacterSet, which says how the text of a
/// match is encoded, is in every identifier already (see [`super::query::character_set`]).
const DETAIL_KEYS: [(Tag, VR); 6] = [
    (tags::STUDY_TIME, VR::TM),
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
    (tags::MODALITIES_IN_STUDY, VR::CS),
];

impl StudyQuery<'_> {
    fn identifier(&self) -> Identifier {
        let (date, uids) = match self.selection {
            StudySelection::Dates { from, to } => (
                format!(
                    "{}-{}",
                    from.format("%Y%m%d"),
                    to.map(|to| to.format("%Y%m%d").to_string())
                        .unwrap_or_default()
                ),
                String::new(),
            ),
            StudySelection::Uids(uids) => (String::new(), uids.join("\\")),
        };
        let mut identifier = match self.extra {
            Some((keys, today)) => Identifier::from_keys(Some("STUDY"), keys, today),
            None => Identifier::from_keys(Some("STUDY"), &QueryKeys::new(), NaiveDate::MIN),
        };
        let object = &mut identifier.0;
        object.put(text_element(tags::STUDY_DATE, VR::DA, &date));
        object.put(text_element(tags::STUDY_INSTANCE_UID, VR::UI, &uids));
        object.put(text_element(
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            VR::IS,
            "",
        ));
        if self.details {
            for (tag, vr) in DETAIL_KEYS {
                // The module's keys may narrow on one of these (e.g. ModalitiesInStudy: CT).
                if object.get(tag).is_none() {
                    object.put(text_element(tag, vr, ""));
                }
            }
        }
        if self.timezone_offset {
            object.put(text_element(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, ""));
        }
        for &(tag, vr) in self.compare {
            if object.get(tag).is_none() {
                object.put(text_element(tag, vr, ""));
            }
        }
        identifier
    }
}

/// Sends one Study Root C-FIND for `query` and hands each match to `on_match`, decoded, as
/// it arrives. See [`find`] for `max_matches` and what the answer says.
pub async fn find_studies(
    association: &mut Association,
    query: &StudyQuery<'_>,
    message_id: u16,
    max_matches: usize,
    on_match: &mut (dyn FnMut(StudyMatch) + Send),
) -> Result<FindAnswer, Error> {
    find(
        association,
        InformationModel::StudyRoot,
        &query.identifier(),
        message_id,
        max_matches,
        &mut |elements| on_match(study_match_comparing(elements, query.compare)),
    )
    .await
}

/// One series of a study as a peer reported it (a SERIES-level match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesMatch {
    /// The StudyInstanceUID the match carries: an archive that ignores the key answers with
    /// series of other studies.
    pub study_uid: Option<String>,
    /// Empty when the peer sent none.
    pub uid: String,
    pub number: Option<String>,
    pub modality: Option<String>,
    /// NumberOfSeriesRelatedInstances, when the peer reports it.
    pub instances: Option<u64>,
}

/// Sends one Study Root C-FIND at SERIES level for the series of `study_uid` and hands each
/// match to `on_match`. See [`find`] for `max_matches` and what the answer says.
pub async fn find_series(
    association: &mut Association,
    study_uid: &str,
    message_id: u16,
    max_matches: usize,
    on_match: &mut (dyn FnMut(SeriesMatch) + Send),
) -> Result<FindAnswer, Error> {
    let mut identifier = Identifier::from_keys(Some("SERIES"), &QueryKeys::new(), NaiveDate::MIN);
    let object = &mut identifier.0;
    object.put(text_element(tags::STUDY_INSTANCE_UID, VR::UI, study_uid));
    for (tag, vr) in [
        (tags::SERIES_INSTANCE_UID, VR::UI),
        (tags::SERIES_NUMBER, VR::IS),
        (tags::MODALITY, VR::CS),
        (tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS),
    ] {
        object.put(text_element(tag, vr, ""));
    }
    find(
        association,
        InformationModel::StudyRoot,
        &identifier,
        message_id,
        max_matches,
        &mut |elements| on_match(series_match(elements)),
    )
    .await
}

/// Reads a SERIES-level match's elements into a [`SeriesMatch`].
pub fn series_match(elements: &[RawElement<'_>]) -> SeriesMatch {
    let raw = |tag: Tag| ascii(elements.iter().find(|e| e.tag == tag).map(|e| e.value));
    SeriesMatch {
        study_uid: raw(tags::STUDY_INSTANCE_UID),
        uid: raw(tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        number: raw(tags::SERIES_NUMBER),
        modality: raw(tags::MODALITY),
        instances: raw(tags::NUMBER_OF_SERIES_RELATED_INSTANCES)
            .as_deref()
            .and_then(instance_count),
    }
}

/// NumberOfStudyRelatedInstances as a count: an IS value, so at most 2^31 - 1; a value no
/// archive could hold (larger, negative, not a number) is unknown, never a wrapped sum.
fn instance_count(text: &str) -> Option<u64> {
    let count: i64 = text.trim().parse().ok()?;
    (0..=i64::from(i32::MAX))
        .contains(&count)
        .then(|| count.unsigned_abs())
}

/// Reads a match's elements into a [`StudyMatch`].
pub fn study_match(elements: &[RawElement<'_>]) -> StudyMatch {
    study_match_comparing(elements, &[])
}

/// Reads a match's elements into a [`StudyMatch`], with the values of `compare`.
pub fn study_match_comparing(elements: &[RawElement<'_>], compare: &[(Tag, VR)]) -> StudyMatch {
    let raw = |tag: Tag| elements.iter().find(|e| e.tag == tag).map(|e| e.value);
    let sets = CharacterSets::parse(&ascii(raw(tags::SPECIFIC_CHARACTER_SET)).unwrap_or_default());
    let decoded = |tag: Tag, vr: VR| {
        raw(tag)
            .map(|bytes| sets.decode(bytes, vr))
            .and_then(|text| trimmed(&text))
    };
    let study_date = ascii(raw(tags::STUDY_DATE));
    let count =
        ascii(raw(tags::NUMBER_OF_STUDY_RELATED_INSTANCES)).filter(|n| !n.trim().is_empty());
    StudyMatch {
        uid: ascii(raw(tags::STUDY_INSTANCE_UID)).unwrap_or_default(),
        date: study_date.as_deref().and_then(parse_date),
        time: ascii(raw(tags::STUDY_TIME)).as_deref().and_then(parse_time),
        timezone_offset: ascii(raw(tags::TIMEZONE_OFFSET_FROM_UTC))
            .as_deref()
            .and_then(parse_offset),
        instances: count.as_deref().and_then(instance_count),
        absurd_count: count
            .as_deref()
            .is_some_and(|n| instance_count(n).is_none()),
        patient_name: decoded(tags::PATIENT_NAME, VR::PN),
        patient_id: decoded(tags::PATIENT_ID, VR::LO),
        study_id: decoded(tags::STUDY_ID, VR::SH),
        accession_number: decoded(tags::ACCESSION_NUMBER, VR::SH),
        modalities: ascii(raw(tags::MODALITIES_IN_STUDY)),
        study_date,
        unknown_character_sets: sets.unknown_terms().to_vec(),
        compared: compare.iter().map(|&(tag, vr)| decoded(tag, vr)).collect(),
    }
}

/// A value of an ASCII-only VR (UI, DA, TM, IS, CS, SH offsets), trimmed of padding; other
/// bytes make it unreadable (`None`), never a panic.
fn ascii(bytes: Option<&[u8]>) -> Option<String> {
    let text = std::str::from_utf8(bytes?).ok()?;
    if !text.is_ascii() {
        return None;
    }
    trimmed(text)
}

fn trimmed(text: &str) -> Option<String> {
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    (!text.is_empty()).then(|| text.to_string())
}

/// DA: `YYYYMMDD`, or the `YYYY.MM.DD` of old ACR-NEMA archives.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 8 {
        return None;
    }
    NaiveDate::parse_from_str(&digits, "%Y%m%d").ok()
}

/// TM: `HH`, `HHMM`, `HHMMSS`, `HHMMSS.FFFFFF`, or `HH:MM:SS` of old archives.
pub fn parse_time(text: &str) -> Option<NaiveTime> {
    let whole = text.split('.').next()?;
    let digits: String = whole.chars().filter(char::is_ascii_digit).collect();
    let field = |i: usize| {
        digits
            .get(i..i + 2)
            .map_or(Some(0), |s| s.parse::<u32>().ok())
    };
    if digits.is_empty() || digits.len() % 2 == 1 || digits.len() > 6 {
        return None;
    }
    NaiveTime::from_hms_opt(field(0)?, field(2)?, field(4)?.min(59))
}

/// TimezoneOffsetFromUTC: `+HHMM` or `-HHMM`, within −12:00..+14:00.
pub fn parse_offset(text: &str) -> Option<FixedOffset> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if minutes >= 60 || !(-12..=14).contains(&(sign * hours)) {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two missing studies claiming 2^64 - 1 instances each once read as 13 missing
    /// instances: counts outside IS's range are unknown.
    #[test]
    fn counts_no_archive_could_hold_are_unknown() {
        assert_eq!(instance_count("12"), Some(12));
        assert_eq!(instance_count(" 2147483647"), Some(2_147_483_647));
        for absurd in ["2147483648", "18446744073709551615", "-1", "many", ""] {
            assert_eq!(instance_count(absurd), None, "{absurd:?}");
        }
    }

    #[test]
    fn dates_times_and_offsets() {
        let date = NaiveDate::from_ymd_opt;
        let time = NaiveTime::from_hms_opt;
        assert_eq!(parse_date("20261125"), date(2026, 11, 25));
        assert_eq!(parse_date("2026.11.25"), date(2026, 11, 25));
        assert_eq!(parse_date("2026112"), None);
        assert_eq!(parse_date("20261345"), None);
        assert_eq!(parse_time("1430"), time(14, 30, 0));
        assert_eq!(parse_time("143005.123456"), time(14, 30, 5));
        assert_eq!(parse_time("14:30:05"), time(14, 30, 5));
        assert_eq!(parse_time("14"), time(14, 0, 0));
        assert_eq!(parse_time("2560"), None);
        assert_eq!(parse_time("143"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_offset("+0300"), FixedOffset::east_opt(3 * 3600));
        assert_eq!(
            parse_offset("-0530"),
            FixedOffset::east_opt(-(5 * 3600 + 1800))
        );
        assert_eq!(parse_offset("+1400"), FixedOffset::east_opt(14 * 3600));
        for bad in [
            "0300", "+03", "+0360", "-1300", "+1500", "+03:00", "", "+", "+é00",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn study_queries_declare_a_character_set() {
        let declared = |query: &StudyQuery<'_>| {
            crate::dicom::query::text(&query.identifier().0, tags::SPECIFIC_CHARACTER_SET)
        };
        let uids = ["1.2.3", "1.2.4"];
        let mut query = StudyQuery {
            selection: StudySelection::Uids(&uids),
            details: false,
            timezone_offset: false,
            extra: None,
            compare: &[],
        };
        assert_eq!(declared(&query).as_deref(), Some("ISO_IR 100"));
        // The detailed query's return keys do not blank the declared set.
        query.details = true;
        assert_eq!(declared(&query).as_deref(), Some("ISO_IR 100"));
        let today = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let ascii: QueryKeys = yaml_serde::from_str("ModalitiesInStudy: CT").unwrap();
        query.extra = Some((&ascii, today));
        assert_eq!(declared(&query).as_deref(), Some("ISO_IR 100"));
        let latin: QueryKeys = yaml_serde::from_str("ReferringPhysicianName: Müller").unwrap();
        query.extra = Some((&latin, today));
        assert_eq!(declared(&query).as_deref(), Some("ISO_IR 192"));
    }

    /// Explicit VR LE bytes of one short element.
    fn element(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&elem.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn matches_are_read_into_typed_studies() {
        let mut bytes = Vec::new();
        bytes.extend(element(0x0008, 0x0005, b"CS", b"ISO_IR 144"));
        bytes.extend(element(0x0008, 0x0020, b"DA", b"20261125"));
        bytes.extend(element(0x0008, 0x0030, b"TM", b"093000"));
        bytes.extend(element(0x0008, 0x0061, b"CS", b"CT\\MR "));
        bytes.extend(element(0x0008, 0x0201, b"SH", b"+0300"));
        // "Иван" in ISO 8859-5.
        bytes.extend(element(0x0010, 0x0010, b"PN", &[0xB8, 0xD2, 0xD0, 0xDD]));
        bytes.extend(element(0x0020, 0x000D, b"UI", b"1.2.3\0"));
        bytes.extend(element(0x0020, 0x1208, b"IS", b"12"));
        let elements = crate::dicom::guard::top_level_elements(&bytes, true).unwrap();
        let m = study_match(&elements);
        assert_eq!(m.uid, "1.2.3");
        assert_eq!(m.date, NaiveDate::from_ymd_opt(2026, 11, 25));
        assert_eq!(m.time, NaiveTime::from_hms_opt(9, 30, 0));
        assert_eq!(m.timezone_offset, FixedOffset::east_opt(3 * 3600));
        assert_eq!(m.instances, Some(12));
        assert_eq!(m.patient_name.as_deref(), Some("Иван"));
        assert_eq!(m.modalities.as_deref(), Some("CT\\MR"));
        assert_eq!(m.patient_id, None);

        // Garbage where ASCII belongs is unreadable, not a panic.
        let bytes = element(0x0020, 0x1208, b"IS", &[0xFF, 0x31]);
        let elements = crate::dicom::guard::top_level_elements(&bytes, true).unwrap();
        assert_eq!(study_match(&elements), StudyMatch::default());
    }
}
