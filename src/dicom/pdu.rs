//! The PDU and DIMSE-message decoding of an association, apart from its socket and deadlines
//! (association.rs): how long a PDU may be before it is buffered, decoding a whole one, the
//! PDVs of a P-DATA PDU, one DIMSE message assembled under its caps, and what a peer says
//! about itself in its A-ASSOCIATE-AC. All of it is pure: the fuzz targets run it alone.

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, UserVariableItem, MAXIMUM_PDU_SIZE};

use super::message::Command;
use super::{Error, ErrorKind, Step};

/// Largest non-P-DATA PDU accepted; association PDUs are a few hundred bytes in practice.
pub const MAX_CONTROL_PDU: u32 = 64 * 1024;
/// Largest command set accepted. Command sets are a few hundred bytes in practice; an
/// ErrorComment or an offending element list fits many times over.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// Largest C-FIND identifier (one match) accepted. A study or worklist match is a few KiB;
/// a peer that sends more is refused before more is buffered.
pub const MAX_IDENTIFIER_BYTES: usize = 64 * 1024;
/// How much of a peer-supplied value an error message shows.
const SHOWN_CHARS: usize = 80;
/// What the peer said about itself in its A-ASSOCIATE-AC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    pub implementation_class_uid: String,
    pub implementation_version_name: String,
    pub max_pdu_length: u32,
}

/// A DIMSE message as received: the command set and, when one follows, the data set bytes.
#[derive(Debug)]
pub struct Message {
    pub presentation_context_id: u8,
    pub command: Command,
    pub data: Option<Vec<u8>>,
}

/// The length a PDU header announces, checked before anything more is read or buffered: a
/// P-DATA PDU may be as long as the `local_max_pdu` we announced, any other PDU at most
/// [`MAX_CONTROL_PDU`]; a type that is no PDU (a TLS record, noise) is refused at once.
pub fn pdu_length(step: Step, header: &[u8; 6], local_max_pdu: u32) -> Result<usize, Error> {
    let pdu_type = header[0];
    let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    let limit = match pdu_type {
        // Some peers count the PDU header in the maximum; a few bytes of slack cost nothing.
        0x04 => local_max_pdu.saturating_add(6),
        0x01..=0x07 => MAX_CONTROL_PDU,
        // TLS records: alert or handshake.
        0x15 | 0x16 => {
            return Err(Error::protocol(
                step,
                "the peer answered with TLS: it needs dicom.tls in the module",
            ))
        }
        _ => {
            return Err(Error::protocol(
                step,
                format!("unknown PDU type {pdu_type:#04x}"),
            ))
        }
    };
    if length > limit {
        return Err(Error::protocol(
            step,
            format!("PDU of type {pdu_type:#04x} announces {length} bytes, more than the {limit} allowed"),
        ));
    }
    Ok(length as usize)
}

/// Decodes one whole PDU, its 6-byte header included, once [`pdu_length`] has allowed it.
pub fn decode_pdu(step: Step, bytes: &[u8]) -> Result<Pdu, Error> {
    match dicom_ul::read_pdu(bytes, MAXIMUM_PDU_SIZE, false) {
        Ok(Some(pdu)) => Ok(pdu),
        Ok(None) => Err(Error::protocol(step, "truncated PDU")),
        Err(e) => Err(Error::protocol(step, format!("malformed PDU: {e}"))),
    }
}

/// The PDVs of a PDU received while a DIMSE message is awaited: those of a P-DATA PDU; an
/// A-ABORT or any other PDU ends the exchange.
pub fn pdata_values(pdu: Pdu) -> Result<Vec<PDataValue>, Error> {
    match pdu {
        Pdu::PData { data } => Ok(data),
        Pdu::AbortRQ { source } => Err(Error::new(Step::Exchange, ErrorKind::Aborted(source))),
        other => Err(Error::protocol(
            Step::Exchange,
            format!("expected P-DATA, got {}", other.short_description()),
        )),
    }
}

/// One DIMSE message being assembled from its PDVs, in the order they arrive, with the caps of
/// [`Association::receive_message`](super::Association::receive_message): a command set of at most [`MAX_COMMAND_BYTES`], a data set
/// of at most `max_data_set` bytes, and every PDV on the presentation context asked for.
pub struct MessageAssembly {
    presentation_context_id: u8,
    max_data_set: usize,
    command_bytes: Vec<u8>,
    data: Vec<u8>,
    /// The command set once its last fragment is in, while its data set is read.
    command: Option<Command>,
}

impl MessageAssembly {
    pub fn new(presentation_context_id: u8, max_data_set: usize) -> MessageAssembly {
        MessageAssembly {
            presentation_context_id,
            max_data_set,
            command_bytes: Vec::new(),
            data: Vec::new(),
            command: None,
        }
    }

    /// Takes the next PDV: the message once it is complete, `None` while more is needed. After
    /// a message or an error the assembly is finished with.
    pub fn push(&mut self, value: PDataValue) -> Result<Option<Message>, Error> {
        let presentation_context_id = self.presentation_context_id;
        if value.presentation_context_id != presentation_context_id {
            return Err(Error::protocol(
                Step::Exchange,
                format!(
                    "a response on presentation context {} to a request on {presentation_context_id}",
                    value.presentation_context_id
                ),
            ));
        }
        match (value.value_type, self.command.take()) {
            (PDataValueType::Command, None) => {
                if !append_capped(&mut self.command_bytes, &value.data, MAX_COMMAND_BYTES) {
                    return Err(Error::protocol(
                        Step::Exchange,
                        format!("command set larger than {MAX_COMMAND_BYTES} bytes"),
                    ));
                }
                if value.is_last {
                    let parsed = Command::parse(&self.command_bytes)
                        .map_err(|e| Error::protocol(Step::Exchange, e))?;
                    if !parsed.has_data_set() {
                        return Ok(Some(Message {
                            presentation_context_id,
                            command: parsed,
                            data: None,
                        }));
                    }
                    if self.max_data_set == 0 {
                        return Err(Error::protocol(
                            Step::Exchange,
                            format!(
                                "a data set follows a response that carries none (command field {:?})",
                                parsed.command_field()
                            ),
                        ));
                    }
                    self.command = Some(parsed);
                }
            }
            (PDataValueType::Data, Some(parsed)) => {
                if !append_capped(&mut self.data, &value.data, self.max_data_set) {
                    return Err(Error::protocol(
                        Step::Exchange,
                        format!("data set larger than {} bytes", self.max_data_set),
                    ));
                }
                if value.is_last {
                    return Ok(Some(Message {
                        presentation_context_id,
                        command: parsed,
                        data: Some(std::mem::take(&mut self.data)),
                    }));
                }
                self.command = Some(parsed);
            }
            (value_type, _) => {
                return Err(Error::protocol(
                    Step::Exchange,
                    format!("unexpected {value_type:?} PDV in message"),
                ))
            }
        }
        Ok(None)
    }
}

/// Appends `bytes` to `buffer` unless it would then hold more than `cap` bytes; says whether
/// it did. The buffer's capacity never grows past `cap` (a plain `extend` may double it).
fn append_capped(buffer: &mut Vec<u8>, bytes: &[u8], cap: usize) -> bool {
    let len = buffer.len() + bytes.len();
    if len > cap {
        return false;
    }
    if len > buffer.capacity() {
        let capacity = (buffer.capacity() * 2).clamp(len, cap);
        buffer.reserve_exact(capacity - buffer.len());
    }
    buffer.extend_from_slice(bytes);
    true
}

/// An implementation class UID or version name that may not become a label value; the
/// message shows the value escaped and cut short.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the implementation class UID in the A-ASSOCIATE-AC is not a UID of 1 to 64 digits and dots: {}", shown(.0))]
    ClassUid(String),
    #[error("the implementation version name in the A-ASSOCIATE-AC is not 1 to 16 printable characters: {}", shown(.0))]
    VersionName(String),
}

/// What the peer says about itself in the user information of its A-ASSOCIATE-AC. The
/// implementation class UID and version name become label values, so a value that is not what
/// PS3.7 D.3.3.2 allows is refused.
pub(super) fn peer_info(items: &[UserVariableItem]) -> Result<PeerInfo, IdentityError> {
    let mut peer = PeerInfo::default();
    for item in items {
        match item {
            UserVariableItem::MaxLength(n) => peer.max_pdu_length = *n,
            UserVariableItem::ImplementationClassUID(uid) => {
                peer.implementation_class_uid = implementation_class_uid(uid)?
            }
            UserVariableItem::ImplementationVersionName(name) => {
                peer.implementation_version_name = implementation_version_name(name)?
            }
            _ => {}
        }
    }
    Ok(peer)
}

/// A UID (PS3.5 9.1): 1 to 64 characters, digits and dots, padded with NUL to even length
/// (some peers pad with a space).
fn implementation_class_uid(value: &str) -> Result<String, IdentityError> {
    let uid = value.trim_end_matches(['\0', ' ']);
    if (1..=64).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        Ok(uid.to_string())
    } else {
        Err(IdentityError::ClassUid(value.to_string()))
    }
}

/// 1 to 16 characters of ISO 646's basic G0 set (printable ASCII, no control characters);
/// padding is trimmed. An empty value is taken as no name.
fn implementation_version_name(value: &str) -> Result<String, IdentityError> {
    let name = value.trim_end_matches(['\0', ' ']);
    if name.len() <= 16 && name.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        Ok(name.trim_start_matches(' ').to_string())
    } else {
        Err(IdentityError::VersionName(value.to_string()))
    }
}

/// A value a peer sent, as an error message may show it: quoted, every character outside
/// printable ASCII escaped, cut after [`SHOWN_CHARS`] characters, with its length in bytes.
fn shown(value: &str) -> String {
    let mut escaped = value.escape_default();
    let head: String = escaped.by_ref().take(SHOWN_CHARS).collect();
    let cut = if escaped.next().is_some() { "…" } else { "" };
    format!("\"{head}\"{cut} ({} bytes)", value.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(uid: &str, name: Option<&str>) -> Vec<UserVariableItem> {
        let mut items = vec![
            UserVariableItem::MaxLength(16384),
            UserVariableItem::ImplementationClassUID(uid.to_string()),
        ];
        items.extend(name.map(|n| UserVariableItem::ImplementationVersionName(n.to_string())));
        items
    }

    #[test]
    fn peer_identity_within_the_standard_is_kept_without_padding() {
        let peer = peer_info(&items(
            "1.2.276.0.7230010.3.0.3.6.7\0",
            Some("OFFIS_DCMTK_367 "),
        ))
        .unwrap();
        assert_eq!(peer.implementation_class_uid, "1.2.276.0.7230010.3.0.3.6.7");
        assert_eq!(peer.implementation_version_name, "OFFIS_DCMTK_367");
        assert_eq!(peer.max_pdu_length, 16384);
        let longest = "1.".repeat(31) + "12";
        assert_eq!(
            peer_info(&items(&longest, Some("0123456789ABCDEF")))
                .unwrap()
                .implementation_class_uid,
            longest
        );
    }

    #[test]
    fn a_missing_version_name_is_an_empty_label() {
        for name in [None, Some(""), Some("  ")] {
            let peer = peer_info(&items("1.2.3", name)).unwrap();
            assert_eq!(peer.implementation_version_name, "", "{name:?}");
        }
        assert_eq!(peer_info(&[]).unwrap(), PeerInfo::default());
    }

    #[test]
    fn identities_outside_the_standard_are_refused_naming_the_field() {
        let long_uid = "1.".repeat(32) + "1";
        for uid in [
            "",
            "\0",
            "1.2.3a",
            "1.2.3\n",
            "1.2 .3",
            long_uid.as_str(),
            "１.２",
        ] {
            let error = peer_info(&items(uid, Some("OK"))).unwrap_err();
            assert_eq!(error, IdentityError::ClassUid(uid.to_string()));
            let error = error.to_string();
            assert!(
                error.contains("implementation class UID"),
                "{uid:?}: {error}"
            );
        }
        for name in [
            "SEVENTEEN_LETTERS",
            "BAD\u{7}BELL",
            "tab\there",
            "ümlaut",
            "a\nb",
        ] {
            let error = peer_info(&items("1.2.3", Some(name))).unwrap_err();
            assert_eq!(error, IdentityError::VersionName(name.to_string()));
            let error = error.to_string();
            assert!(
                error.contains("implementation version name"),
                "{name:?}: {error}"
            );
        }
    }

    #[test]
    fn capped_buffers_never_grow_past_their_cap() {
        let mut buffer = Vec::new();
        for _ in 0..9 {
            assert!(append_capped(&mut buffer, &[7; 7_000], 64 * 1024));
        }
        assert!(!append_capped(&mut buffer, &[7; 7_000], 64 * 1024));
        assert_eq!(buffer.len(), 63_000);
        assert!(buffer.capacity() <= 64 * 1024, "{}", buffer.capacity());
        assert!(append_capped(&mut buffer, &[7; 1_000], 64 * 1024));
        assert!(!append_capped(&mut Vec::new(), &[1], 0));
        assert!(append_capped(&mut Vec::new(), &[], 0));
    }

    #[test]
    fn shown_values_are_escaped_and_cut() {
        assert_eq!(shown("1.2\u{1b}[31m"), r#""1.2\u{1b}[31m" (8 bytes)"#);
        let long = "9".repeat(60_000);
        let text = shown(&long);
        assert!(
            text.starts_with(&format!("\"{}\"…", "9".repeat(SHOWN_CHARS))),
            "{text}"
        );
        assert!(text.ends_with("(60000 bytes)"), "{text}");
        assert!(text.len() < 120);
    }
}
