//! A check of an encoded data set before dicom-object parses it.
//!
//! The parser trusts what it reads: it allocates an element's declared length before reading
//! the bytes, and descends into nested sequences by recursion. A peer could make it allocate
//! gigabytes with a 100-byte message, or overflow the stack with a few thousand nested
//! sequences. This walk, iterative and allocation-free, refuses both before the parser sees
//! the data: every declared length must fit in the bytes that remain, and sequences may nest
//! only so deep.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntryRef};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// Sequences and items open at once, at most (a sequence and its item count as two).
/// Real C-FIND identifiers nest two or three levels.
const MAX_NESTING: usize = 32;
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Why an encoded data set was refused, with the byte offset where that is known.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MalformedDataSet {
    #[error("an element overruns its enclosing item at byte {0}")]
    Overrun(usize),
    #[error("truncated element header at byte {0}")]
    TruncatedHeader(usize),
    #[error("an item outside a sequence at byte {0}")]
    ItemOutsideSequence(usize),
    #[error("unexpected delimiter at byte {0}")]
    UnexpectedDelimiter(usize),
    #[error("unknown item tag (FFFE,{0:04X})")]
    UnknownItemTag(u16),
    #[error("element {tag} directly in a sequence at byte {at}")]
    ElementInSequence { tag: Tag, at: usize },
    #[error("element {tag} declares {length} bytes, only {remain} remain")]
    ElementTooLong {
        tag: Tag,
        length: usize,
        remain: usize,
    },
    #[error(
        "element {tag} ({vr}) declares {length} bytes, not a whole number of {size}-byte values"
    )]
    PartialValue {
        tag: Tag,
        vr: VR,
        length: usize,
        size: usize,
    },
    #[error("a sequence or item declares {length} bytes, only {remain} remain")]
    ContainerTooLong { length: usize, remain: usize },
    #[error("sequences nested more than {MAX_NESTING} deep")]
    TooDeep,
}

/// Checks `bytes`, a data set in Explicit or Implicit VR Little Endian.
pub fn check_data_set(bytes: &[u8], explicit: bool) -> Result<(), MalformedDataSet> {
    walk(bytes, explicit, &mut |_| {})
}

/// One element at the top level of a data set (not inside a sequence), as encoded.
#[derive(Clone, Copy, Debug)]
pub struct RawElement<'a> {
    pub tag: Tag,
    /// The VR as encoded (explicit VR) or from the dictionary (implicit VR); `None` when
    /// neither tells.
    pub vr: Option<VR>,
    pub value: &'a [u8],
}

/// Checks `bytes` as [`check_data_set`] does and returns its top-level elements, sequences
/// left out. This is all a flat C-FIND identifier needs, and nothing is copied.
pub fn top_level_elements(
    bytes: &[u8],
    explicit: bool,
) -> Result<Vec<RawElement<'_>>, MalformedDataSet> {
    let mut elements = Vec::new();
    walk(bytes, explicit, &mut |element| elements.push(element))?;
    Ok(elements)
}

/// The walk behind both: `top_level` sees each top-level element that is not a sequence.
fn walk<'a>(
    bytes: &'a [u8],
    explicit: bool,
    top_level: &mut dyn FnMut(RawElement<'a>),
) -> Result<(), MalformedDataSet> {
    // Each open container and its end offset; `None` for one of undefined length.
    let mut open: Vec<(Container, Option<usize>)> = Vec::new();
    let mut pos = 0usize;
    loop {
        while let Some((_, Some(end))) = open.last() {
            if pos < *end {
                break;
            }
            if pos > *end {
                return Err(MalformedDataSet::Overrun(pos));
            }
            open.pop();
        }
        if pos == bytes.len() {
            return Ok(());
        }
        let header = bytes
            .get(pos..pos + 8)
            .ok_or(MalformedDataSet::TruncatedHeader(pos))?;
        let tag = Tag(le16(&header[0..2]), le16(&header[2..4]));
        if tag.group() == 0xFFFE {
            let length = le32(&header[4..8]);
            pos += 8;
            // dicom-parser reads items and delimiters where the structure allows them, and
            // anything else out of step: an item only directly in a sequence, and each
            // delimiter (of length 0) only closing its own kind of undefined-length container.
            let innermost = open.last().map(|(kind, end)| (*kind, end.is_none()));
            match (tag.element(), innermost) {
                (0xE000, Some((Container::Sequence, _))) => {
                    open.push((Container::Item, container(bytes, pos, length)?))
                }
                (0xE000, _) => return Err(MalformedDataSet::ItemOutsideSequence(pos - 8)),
                (0xE00D, Some((Container::Item, true)))
                | (0xE0DD, Some((Container::Sequence, true)))
                    if length == 0 =>
                {
                    open.pop();
                }
                (0xE00D | 0xE0DD, _) => return Err(MalformedDataSet::UnexpectedDelimiter(pos - 8)),
                (other, _) => return Err(MalformedDataSet::UnknownItemTag(other)),
            }
        } else {
            let (vr, length, header_length) = if explicit {
                let vr = VR::from_binary([header[4], header[5]]);
                if has_long_length(vr) {
                    let length = bytes
                        .get(pos + 8..pos + 12)
                        .ok_or(MalformedDataSet::TruncatedHeader(pos))?;
                    (vr, le32(length), 12)
                } else {
                    (vr, u32::from(le16(&header[6..8])), 8)
                }
            } else {
                (dictionary_vr(tag), le32(&header[4..8]), 8)
            };
            if let Some((Container::Sequence, _)) = open.last() {
                return Err(MalformedDataSet::ElementInSequence { tag, at: pos });
            }
            pos += header_length;
            if length == UNDEFINED || vr == Some(VR::SQ) {
                // A sequence (or encapsulated data): its items follow.
                open.push((Container::Sequence, container(bytes, pos, length)?));
            } else {
                let length = length as usize;
                if length > bytes.len() - pos {
                    return Err(MalformedDataSet::ElementTooLong {
                        tag,
                        length,
                        remain: bytes.len() - pos,
                    });
                }
                // dicom-parser reads whole numbers of such values but skips the declared
                // length, so a remainder would put it out of step with the encoding.
                if let Some((vr, size)) = vr.and_then(|vr| Some((vr, number_size(vr)?))) {
                    if !length.is_multiple_of(size) {
                        return Err(MalformedDataSet::PartialValue {
                            tag,
                            vr,
                            length,
                            size,
                        });
                    }
                }
                if open.is_empty() {
                    top_level(RawElement {
                        tag,
                        vr,
                        value: &bytes[pos..pos + length],
                    });
                }
                pos += length;
            }
        }
        if open.len() > MAX_NESTING {
            return Err(MalformedDataSet::TooDeep);
        }
    }
}

/// What an open container holds: a sequence (or encapsulated data) holds items, an item holds
/// elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    Sequence,
    Item,
}

/// A container starting at `pos` with `length`: its end, or `None` when undefined.
fn container(bytes: &[u8], pos: usize, length: u32) -> Result<Option<usize>, MalformedDataSet> {
    if length == UNDEFINED {
        return Ok(None);
    }
    let length = length as usize;
    if length > bytes.len() - pos {
        return Err(MalformedDataSet::ContainerTooLong {
            length,
            remain: bytes.len() - pos,
        });
    }
    Ok(Some(pos + length))
}

/// VRs with a reserved field and a 4-byte length in explicit VR.
fn has_long_length(vr: Option<VR>) -> bool {
    matches!(
        vr,
        None | Some(
            VR::OB
                | VR::OD
                | VR::OF
                | VR::OL
                | VR::OV
                | VR::OW
                | VR::SQ
                | VR::SV
                | VR::UC
                | VR::UN
                | VR::UR
                | VR::UT
                | VR::UV
        )
    )
}

/// The size of one value of a VR made of fixed-size binary numbers.
fn number_size(vr: VR) -> Option<usize> {
    match vr {
        VR::OW | VR::SS | VR::US => Some(2),
        VR::AT | VR::FL | VR::OF | VR::OL | VR::SL | VR::UL => Some(4),
        VR::FD | VR::OD | VR::OV | VR::SV | VR::UV => Some(8),
        _ => None,
    }
}

fn dictionary_vr(tag: Tag) -> Option<VR> {
    let entry: &DataDictionaryEntryRef = StandardDataDictionary.by_tag(tag)?;
    Some(entry.vr.relaxed())
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (0040,0100) SQ undefined, then an item, `depth` times, then the delimiters.
    fn nested(depth: usize, explicit: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..depth {
            out.extend_from_slice(&[0x40, 0x00, 0x00, 0x01]);
            if explicit {
                out.extend_from_slice(b"SQ\0\0");
            }
            out.extend_from_slice(&UNDEFINED.to_le_bytes());
            out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            out.extend_from_slice(&UNDEFINED.to_le_bytes());
        }
        for _ in 0..depth {
            out.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        out
    }

    #[test]
    fn real_encodings_pass() {
        use dicom_object::InMemDicomObject;
        use dicom_transfer_syntax_registry::entries::{
            EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
        };
        let keys: crate::dicom::query::QueryKeys = yaml_serde::from_str(
            "PatientName: Müller\nScheduledProcedureStepSequence: {Modality: MR, ScheduledStationAETitle: }\nStudyInstanceUID: 1.2.3",
        )
        .unwrap();
        let mut object = InMemDicomObject::new_empty();
        crate::dicom::query::apply(
            &mut object,
            &keys,
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        );
        for (ts, explicit) in [
            (EXPLICIT_VR_LITTLE_ENDIAN.erased(), true),
            (IMPLICIT_VR_LITTLE_ENDIAN.erased(), false),
        ] {
            let mut bytes = Vec::new();
            object.write_dataset_with_ts(&mut bytes, &ts).unwrap();
            check_data_set(&bytes, explicit).unwrap();
        }
        check_data_set(&nested(3, true), true).unwrap();
        check_data_set(&nested(3, false), false).unwrap();
        check_data_set(&[], true).unwrap();
    }

    #[test]
    fn hostile_encodings_are_refused() {
        assert!(check_data_set(&nested(3000, true), true)
            .unwrap_err()
            .to_string()
            .contains("nested"));
        assert!(check_data_set(&nested(3000, false), false)
            .unwrap_err()
            .to_string()
            .contains("nested"));
        // (0000,0002) UI with a 4 GiB length, implicit; and an explicit OB claiming too much.
        let huge = [0x00, 0x00, 0x02, 0x00, 0xF0, 0xFF, 0xFF, 0xFF, b'1', 0];
        assert!(check_data_set(&huge, false)
            .unwrap_err()
            .to_string()
            .contains("declares"));
        let ob = [
            0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 0x00, 0x00, 0x00, 0x10,
        ];
        assert!(check_data_set(&ob, true)
            .unwrap_err()
            .to_string()
            .contains("declares"));
        // (0052,0002) FD, implicit, with 28 bytes: 3 values and a remainder. The parser would
        // read the remainder as the next element's header.
        let mut fd = vec![0x52, 0x00, 0x02, 0x00, 28, 0, 0, 0];
        fd.resize(8 + 28, 0);
        assert!(check_data_set(&fd, false)
            .unwrap_err()
            .to_string()
            .contains("whole number of 8-byte values"));
        let us = [0x28, 0x00, 0x10, 0x00, b'U', b'S', 3, 0, 1, 2, 3];
        assert!(check_data_set(&us, true)
            .unwrap_err()
            .to_string()
            .contains("2-byte"));
        assert!(check_data_set(&[0x08, 0x00, 0x20], true)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        // An item inside an item, not in a sequence: dicom-parser read on out of step and
        // allocated a length taken from element values (1.7 GB from 103 bytes).
        let mut item_in_item = vec![0x40, 0x00, 0x00, 0x01, b'S', b'Q', 0, 0];
        item_in_item.extend_from_slice(&UNDEFINED.to_le_bytes());
        item_in_item.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        item_in_item.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        assert!(check_data_set(&item_in_item, true)
            .unwrap_err()
            .to_string()
            .contains("outside a sequence"));
        // An element directly in a sequence, and a sequence closed by an item delimiter.
        let mut loose = vec![0x40, 0x00, 0x00, 0x01, b'S', b'Q', 0, 0];
        loose.extend_from_slice(&UNDEFINED.to_le_bytes());
        let mut wrong_delimiter = loose.clone();
        loose.extend_from_slice(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'M', b'R']);
        assert!(check_data_set(&loose, true)
            .unwrap_err()
            .to_string()
            .contains("directly in a sequence"));
        wrong_delimiter.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        assert!(check_data_set(&wrong_delimiter, true)
            .unwrap_err()
            .to_string()
            .contains("delimiter"));
        let stray = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
        assert!(check_data_set(&stray, true)
            .unwrap_err()
            .to_string()
            .contains("delimiter"));
        // An item whose element runs past the item's end.
        let mut overrun = vec![0x40, 0x00, 0x00, 0x01, b'S', b'Q', 0, 0];
        overrun.extend_from_slice(&UNDEFINED.to_le_bytes());
        overrun.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0]);
        overrun.extend_from_slice(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'M', b'R']);
        assert!(check_data_set(&overrun, true).is_err());
    }
}
