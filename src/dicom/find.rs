//! C-FIND: queries, their pending answers and the final status.
//!
//! An answer is read to its end. The final status is returned as the peer sent it, and
//! [`FindAnswer::completeness`] is the one place that says whether an answer is the whole
//! truth: complete (0x0000 or a warning), cut off by the peer (0xFE00, as Orthanc does when
//! `LimitFindResults` is reached) or failed. Each match is checked by [`super::guard`] and
//! handed to the caller as its top-level elements, undecoded: no match is parsed into an
//! object tree, so a peer's answer costs what its bytes cost and no more.

use chrono::NaiveDate;
use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use super::guard::RawElement;
use super::message::{command_field, encode_command, status_is_failure};
use super::pdu::MAX_IDENTIFIER_BYTES;
use super::query::{self, text_element, QueryKeys};
use super::{Association, Error, ErrorKind, Step, EXPLICIT_VR_LE};

/// The query information models a C-FIND can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InformationModel {
    StudyRoot,
    PatientRoot,
    Worklist,
}

impl InformationModel {
    /// The SOP class UID of the model's FIND service.
    pub fn sop_class(self) -> &'static str {
        match self {
            InformationModel::StudyRoot => uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            InformationModel::PatientRoot => {
                uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND
            }
            InformationModel::Worklist => uids::MODALITY_WORKLIST_INFORMATION_MODEL_FIND,
        }
    }
}

/// A C-FIND identifier: the matching and return keys of one query.
#[derive(Clone, Debug)]
pub struct Identifier(pub(crate) InMemDicomObject);

impl Identifier {
    /// An identifier from a module's keys, with QueryRetrieveLevel when `level` is given;
    /// `today` in a date attribute becomes `today`'s date.
    pub fn from_keys(level: Option<&str>, keys: &QueryKeys, today: NaiveDate) -> Identifier {
        let mut identifier = InMemDicomObject::new_empty();
        if let Some(level) = level {
            identifier.put(text_element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level));
        }
        query::apply(&mut identifier, keys, today);
        Identifier(identifier)
    }
}

/// Whether an answer can be taken as the whole truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// Final status success or a warning: these are all the matches.
    Complete,
    /// Status 0xFE00: the peer stopped early (a result cap); more matches exist.
    CutOff,
    /// A failure status: the matches so far say nothing about the rest.
    Failed,
}

/// The answer to one C-FIND.
#[derive(Debug)]
pub struct FindAnswer {
    /// How many matches (pending responses) arrived.
    pub matches: usize,
    /// The final status: 0x0000 complete, 0xFE00 cut off by the peer, or a failure.
    pub status: u16,
    /// The peer's ErrorComment, if it gave one with the final status.
    pub error_comment: Option<String>,
}

impl FindAnswer {
    /// The rule for "is this all": the only place a final status is judged.
    pub fn completeness(&self) -> Completeness {
        if self.status == 0xFE00 {
            Completeness::CutOff
        } else if status_is_failure(self.status) {
            Completeness::Failed
        } else {
            Completeness::Complete
        }
    }

    /// Whether the answer is the whole truth.
    pub fn is_complete(&self) -> bool {
        self.completeness() == Completeness::Complete
    }
}

/// Sends one C-FIND-RQ with `identifier` and reads every response until the final one.
/// Each match is handed to `on_match` as it arrives, as its top-level elements, so that a
/// caller keeps only what it needs; it is called for a match before that match is counted
/// against `max_matches`, so a caller's own count includes what was read.
/// More than `max_matches` pending answers end the query with [`ErrorKind::TooManyMatches`]
/// (the association is then aborted by the caller, which stops the peer).
pub async fn find(
    association: &mut Association,
    model: InformationModel,
    identifier: &Identifier,
    message_id: u16,
    max_matches: usize,
    on_match: &mut (dyn FnMut(&[RawElement<'_>]) + Send),
) -> Result<FindAnswer, Error> {
    let sop_class = model.sop_class();
    let context = association
        .context_for(sop_class)
        .ok_or(Error::new(Step::Exchange, ErrorKind::NoPresentationContext))?
        .clone();
    let explicit = context.transfer_syntax == EXPLICIT_VR_LE;
    let data = encode_identifier(&identifier.0, explicit)
        .map_err(|e| Error::protocol(Step::Exchange, format!("cannot encode the query: {e}")))?;
    let request = encode_command(command_field::C_FIND_RQ, message_id, sop_class, true);
    association
        .send_message(context.id, &request, Some(&data))
        .await?;

    let mut matches = 0;
    loop {
        let message = association
            .receive_message(context.id, MAX_IDENTIFIER_BYTES)
            .await?;
        let command = &message.command;
        let status = command
            .response_status(command_field::C_FIND_RSP, "C-FIND-RSP", message_id)
            .map_err(|e| Error::protocol(Step::Exchange, e))?;
        if matches!(status, 0xFF00 | 0xFF01) {
            let data = message.data.ok_or_else(|| {
                Error::protocol(Step::Exchange, "pending C-FIND-RSP without an identifier")
            })?;
            let elements = super::guard::top_level_elements(&data, explicit).map_err(|e| {
                Error::protocol(Step::Exchange, format!("malformed C-FIND match: {e}"))
            })?;
            on_match(&elements);
            matches += 1;
            if matches > max_matches {
                return Err(Error::new(
                    Step::Exchange,
                    ErrorKind::TooManyMatches(max_matches),
                ));
            }
            continue;
        }
        return Ok(FindAnswer {
            matches,
            status,
            error_comment: command.error_comment(),
        });
    }
}

fn encode_identifier(identifier: &InMemDicomObject, explicit: bool) -> Result<Vec<u8>, String> {
    let ts = if explicit {
        EXPLICIT_VR_LITTLE_ENDIAN.erased()
    } else {
        IMPLICIT_VR_LITTLE_ENDIAN.erased()
    };
    let mut out = Vec::new();
    identifier
        .write_dataset_with_ts_cs(&mut out, &ts, declared_character_set(identifier))
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The encoder for the SpecificCharacterSet an identifier declares (see
/// [`query::character_set`]); the default repertoire when it declares none.
fn declared_character_set(identifier: &InMemDicomObject) -> SpecificCharacterSet {
    identifier
        .get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_str().ok())
        .and_then(|cs| SpecificCharacterSet::from_code(cs.trim_matches([' ', '\0'])))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn identifiers_are_encoded_in_the_set_they_declare() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let keys: QueryKeys = yaml_serde::from_str("StudyInstanceUID: 1.2.3\\1.2.4").unwrap();
        let ascii = Identifier::from_keys(Some("STUDY"), &keys, today);
        let keys: QueryKeys = yaml_serde::from_str("PatientName: Müller^Jürgen").unwrap();
        let utf8 = Identifier::from_keys(Some("STUDY"), &keys, today);
        for explicit in [true, false] {
            let bytes = encode_identifier(&ascii.0, explicit).unwrap();
            assert!(contains(&bytes, b"ISO_IR 100"), "{explicit}");
            assert!(contains(&bytes, b"1.2.3\\1.2.4"), "{explicit}");
            let bytes = encode_identifier(&utf8.0, explicit).unwrap();
            assert!(contains(&bytes, b"ISO_IR 192"), "{explicit}");
            assert!(contains(&bytes, "Müller^Jürgen".as_bytes()), "{explicit}");
        }
    }
}
