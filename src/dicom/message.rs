//! DIMSE command sets: encoding requests and reading responses.
//!
//! A command set is always Implicit VR Little Endian, whatever transfer syntax the presentation
//! context uses for data sets, and starts with its group length.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// CommandDataSetType value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;

/// Command field values (PS3.7 E.1).
pub mod command_field {
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
}

/// A DIMSE status is a failure unless it is Success (0x0000), Pending (0xFF00, 0xFF01),
/// Cancel (0xFE00) or a Warning (0x0001, 0x0107, 0x0116, 0xB000–0xBFFF).
pub fn status_is_failure(status: u16) -> bool {
    !matches!(
        status,
        0x0000 | 0xFF00 | 0xFF01 | 0xFE00 | 0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF
    )
}

/// Builds a request command set with its group length.
pub fn encode_command(
    command_field: u16,
    message_id: u16,
    affected_sop_class: &str,
    has_data_set: bool,
) -> Vec<u8> {
    // Priority MEDIUM (0) on requests that carry one.
    let priority = (command_field != command_field::C_ECHO_RQ).then_some((tags::PRIORITY, 0));
    command_set(
        affected_sop_class,
        command_field,
        (tags::MESSAGE_ID, message_id),
        has_data_set,
        priority,
    )
}

/// Builds a response command set (for the demo SCP) with its group length.
pub fn encode_response(
    command_field: u16,
    message_id: u16,
    affected_sop_class: &str,
    status: u16,
    has_data_set: bool,
) -> Vec<u8> {
    command_set(
        affected_sop_class,
        command_field,
        (tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        has_data_set,
        Some((tags::STATUS, status)),
    )
}

/// The elements every command set has, an optional extra US element, and the group length.
fn command_set(
    affected_sop_class: &str,
    command_field: u16,
    message_id: (Tag, u16),
    has_data_set: bool,
    extra: Option<(Tag, u16)>,
) -> Vec<u8> {
    let us = |(tag, value): (Tag, u16)| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let data_set_type = if has_data_set { 0x0000 } else { NO_DATA_SET };
    let mut elements = vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(uid_value(affected_sop_class)),
        ),
        us((tags::COMMAND_FIELD, command_field)),
        us(message_id),
        us((tags::COMMAND_DATA_SET_TYPE, data_set_type)),
    ];
    elements.extend(extra.map(us));
    with_group_length(elements)
}

fn with_group_length(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let body = encode_implicit_le(&InMemDicomObject::from_element_iter(elements));
    // (0000,0000) UL, implicit VR: tag, 4-byte length, 4-byte value.
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// UIDs are padded to even length with a NUL byte.
pub fn uid_value(uid: &str) -> String {
    let mut value = uid.to_string();
    if value.len() % 2 == 1 {
        value.push('\0');
    }
    value
}

fn encode_implicit_le(object: &InMemDicomObject) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into memory only fails on values that cannot be encoded; a command set built
    // from the fixed elements above always can.
    if let Err(e) = object.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased()) {
        tracing::error!(error = %e, "cannot encode command set");
    }
    out
}

/// A command set that is not the response asked for, or not a command set at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("malformed command set: {0}")]
    Malformed(#[from] super::guard::MalformedDataSet),
    #[error("expected {expected}, got command field {got:?}")]
    Unexpected { expected: String, got: Option<u16> },
    #[error("{0} answers another message ID")]
    OtherMessage(String),
    #[error("{0} has no status")]
    NoStatus(String),
}

/// A received command set: the fields the probers read, taken from the checked bytes
/// without building a dicom-object tree (a command set is flat, and this runs for every
/// message, once per C-FIND match).
#[derive(Debug, Default)]
pub struct Command {
    command_field: Option<u16>,
    status: Option<u16>,
    message_id: Option<u16>,
    message_id_being_responded_to: Option<u16>,
    data_set_type: Option<u16>,
    error_comment: Option<String>,
}

impl Command {
    pub fn parse(bytes: &[u8]) -> Result<Command, CommandError> {
        let elements = super::guard::top_level_elements(bytes, false)?;
        let mut command = Command::default();
        for element in elements {
            // US values: the guard has checked their length is a whole number of values.
            let us = || Some(u16::from_le_bytes(element.value.get(..2)?.try_into().ok()?));
            match element.tag {
                tags::COMMAND_FIELD => command.command_field = us(),
                tags::STATUS => command.status = us(),
                tags::MESSAGE_ID => command.message_id = us(),
                tags::MESSAGE_ID_BEING_RESPONDED_TO => command.message_id_being_responded_to = us(),
                tags::COMMAND_DATA_SET_TYPE => command.data_set_type = us(),
                tags::ERROR_COMMENT => {
                    command.error_comment = Some(
                        String::from_utf8_lossy(element.value)
                            .trim_end_matches(['\0', ' '])
                            .to_string(),
                    )
                }
                _ => {}
            }
        }
        Ok(command)
    }

    pub fn command_field(&self) -> Option<u16> {
        self.command_field
    }

    pub fn status(&self) -> Option<u16> {
        self.status
    }

    pub fn message_id(&self) -> Option<u16> {
        self.message_id
    }

    pub fn message_id_being_responded_to(&self) -> Option<u16> {
        self.message_id_being_responded_to
    }

    /// Whether a data set follows this command (CommandDataSetType other than 0x0101).
    pub fn has_data_set(&self) -> bool {
        self.data_set_type.is_some_and(|t| t != NO_DATA_SET)
    }

    /// Checks that this is the `expected` response (e.g. C-ECHO-RSP) to `message_id` and
    /// returns its status.
    pub fn response_status(
        &self,
        expected: u16,
        name: &str,
        message_id: u16,
    ) -> Result<u16, CommandError> {
        if self.command_field() != Some(expected) {
            return Err(CommandError::Unexpected {
                expected: name.to_string(),
                got: self.command_field(),
            });
        }
        if self.message_id_being_responded_to() != Some(message_id) {
            return Err(CommandError::OtherMessage(name.to_string()));
        }
        self.status()
            .ok_or_else(|| CommandError::NoStatus(name.to_string()))
    }

    /// ErrorComment (0000,0902), when the peer explains a failure status.
    pub fn error_comment(&self) -> Option<String> {
        self.error_comment.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_command_round_trips_with_group_length() {
        let bytes = encode_command(
            command_field::C_ECHO_RQ,
            7,
            crate::dicom::VERIFICATION,
            false,
        );
        let group_length = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(group_length, bytes.len() - 12);
        let command = Command::parse(&bytes).unwrap();
        assert_eq!(command.command_field(), Some(command_field::C_ECHO_RQ));
        assert!(!command.has_data_set());
        assert_eq!(command.message_id(), Some(7));
    }

    #[test]
    fn statuses() {
        for ok in [0x0000, 0xFF00, 0xFF01, 0xFE00, 0xB000, 0x0107] {
            assert!(!status_is_failure(ok), "{ok:#06x}");
        }
        for bad in [0xA700, 0xA900, 0xC000, 0x0110, 0x0122, 0x0211] {
            assert!(status_is_failure(bad), "{bad:#06x}");
        }
    }
}
