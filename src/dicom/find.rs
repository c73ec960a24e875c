//! C-FIND: queries, their pending answers and the final status.
//!
//! An answer is read to its end. The final status is returned as the peer sent it, so that the
//! caller can tell a complete answer (0x0000) from one the peer cut off (0xFE00, as Orthanc
//! does when `LimitFindResults` is reached) or a failure. Text in matches is decoded per the
//! match's SpecificCharacterSet by dicom-object and read here as UTF-8.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use super::association::MAX_IDENTIFIER_BYTES;
use super::message::{command_field, encode_command, status_is_failure};
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
            InformationModel::StudyRoot => "1.2.840.10008.5.1.4.1.2.2.1",
            InformationModel::PatientRoot => "1.2.840.10008.5.1.4.1.2.1.1",
            InformationModel::Worklist => "1.2.840.10008.5.1.4.31",
        }
    }
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
    /// Whether the answer is the whole truth: final status success (or a warning).
    pub fn is_complete(&self) -> bool {
        self.status != 0xFE00 && !status_is_failure(self.status)
    }
}

/// Sends one C-FIND-RQ with `identifier` and reads every response until the final one.
/// Each match is handed to `on_match` as it arrives, so that a caller keeps only what it needs.
/// More than `max_matches` pending answers end the query with [`ErrorKind::TooManyMatches`]
/// (the association is then aborted by the caller, which stops the peer).
pub async fn find(
    association: &mut Association,
    model: InformationModel,
    identifier: &InMemDicomObject,
    message_id: u16,
    max_matches: usize,
    on_match: &mut (dyn FnMut(&InMemDicomObject) + Send),
) -> Result<FindAnswer, Error> {
    let sop_class = model.sop_class();
    let context = association
        .context_for(sop_class)
        .ok_or(Error::new(Step::Exchange, ErrorKind::NoPresentationContext))?
        .clone();
    let explicit = context.transfer_syntax == EXPLICIT_VR_LE;
    let data = encode_identifier(identifier, explicit)
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
            let ts = if explicit {
                EXPLICIT_VR_LITTLE_ENDIAN.erased()
            } else {
                IMPLICIT_VR_LITTLE_ENDIAN.erased()
            };
            super::guard::check_data_set(&data, explicit).map_err(|e| {
                Error::protocol(Step::Exchange, format!("malformed C-FIND match: {e}"))
            })?;
            let object = InMemDicomObject::read_dataset_with_ts(&data[..], &ts).map_err(|e| {
                Error::protocol(Step::Exchange, format!("cannot parse a C-FIND match: {e}"))
            })?;
            on_match(&object);
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
    let charset = if needs_utf8(identifier) {
        SpecificCharacterSet::ISO_IR_192
    } else {
        SpecificCharacterSet::default()
    };
    identifier
        .write_dataset_with_ts_cs(&mut out, &ts, charset)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn needs_utf8(identifier: &InMemDicomObject) -> bool {
    identifier
        .get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_str().ok())
        .is_some_and(|cs| cs.contains("192"))
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

/// A text attribute of a match, trimmed of padding; `None` when absent, empty or undecodable.
pub fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = object.get(tag)?.to_str().ok()?;
    let value = value.trim_matches(|c: char| c == '\0' || c == ' ');
    (!value.is_empty()).then(|| value.to_string())
}

/// An integer attribute of a match (e.g. NumberOfStudyRelatedInstances).
pub fn integer(object: &InMemDicomObject, tag: Tag) -> Option<u64> {
    let element = object.get(tag)?;
    element
        .to_int::<u64>()
        .ok()
        .or_else(|| element.to_str().ok()?.trim().parse().ok())
}
