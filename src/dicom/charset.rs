//! Decoding of DICOM text values per Specific Character Set (0008,0005), and the one rule for
//! turning decoded text into a Prometheus label value.
//!
//! Covers every defined term of PS3.3 C.12.1.1.2: the single-byte sets with and without code
//! extensions, ISO_IR 192 (UTF-8), GB18030 and GBK, and the ISO 2022 multi-byte sets
//! (ISO 2022 IR 87, 159, 149, 58) with the escape-sequence rules of PS3.5 section 6.1. The
//! code tables themselves come from `encoding_rs`; this module only walks the ISO 2022 state.
//!
//! It must not panic, fail or guess silently: invalid bytes become U+FFFD, an unknown escape
//! sequence becomes one U+FFFD, and an unknown defined term falls back to the default repertoire
//! and is listed by [`CharacterSets::unknown_terms`] for the caller to log. It knows nothing of
//! networks, data sets or metrics: bytes and a VR in, text out.
//!
//! Deviations seen from real peers are read, each by a fixed rule, not a guess: escape
//! sequences for sets not declared; G1 bytes with nothing designated in G1 (the first declared
//! G1 set is used, as Orthanc sends `ISO 2022 IR 149` and `ISO 2022 IR 58` without escapes);
//! `ISO_IR n` for a single-byte set inside a multi-valued list; and Shift_JIS under `ISO_IR 13`
//! (see `Sets::is_shift_jis`).

use dicom_core::VR;
use encoding_rs::Encoding;

/// The character sets a data set declares, parsed from the raw SpecificCharacterSet value.
#[derive(Debug, Clone)]
pub struct CharacterSets {
    repertoire: Repertoire,
    unknown: Vec<String>,
}

impl CharacterSets {
    /// `value` is the raw (already ASCII) SpecificCharacterSet text, e.g. "\\ISO 2022 IR 87";
    /// "" or absent = default.
    pub fn parse(value: &str) -> CharacterSets {
        let values: Vec<&str> = value
            .split('\\')
            .map(|v| v.trim_matches(|c| c == ' ' || c == '\0'))
            .collect();
        let mut unknown = Vec::new();
        let mut terms = Vec::with_capacity(values.len());
        for v in &values {
            let term = if v.is_empty() {
                Some(Term::DEFAULT)
            } else {
                Term::lookup(v)
            };
            if term.is_none() {
                unknown.push((*v).to_owned());
            }
            terms.push(term.unwrap_or(Term::DEFAULT));
        }

        // UTF-8, GB18030 and GBK admit no code extensions; one of them decides the whole value.
        if let Some(whole) = terms.iter().find_map(|t| t.whole) {
            return CharacterSets {
                repertoire: Repertoire::Whole(whole),
                unknown,
            };
        }
        let first = terms.first().copied().unwrap_or(Term::DEFAULT);
        let extensions = values.len() > 1 || first.announces_extensions;
        // Value 1 must be a single-byte set (Table C.12-3); a multi-byte G0 there cannot be the
        // initial state, because delimiters could not be recognised in it.
        let g0 = first.g0.filter(|g| !g.is_multi_byte()).unwrap_or(G0::Ascii);
        let initial = State { g0, g1: first.g1 };
        let fallback_g1 = terms.iter().find_map(|t| t.g1);
        CharacterSets {
            repertoire: Repertoire::Iso2022(Sets {
                initial,
                extensions,
                fallback_g1,
            }),
            unknown,
        }
    }

    /// Terms that were not recognised (for a log line), empty when all were.
    pub fn unknown_terms(&self) -> &[String] {
        &self.unknown
    }

    /// Decodes one element value (all of its bytes, possibly multi-valued with '\\'), of the
    /// given VR. `vr` only decides which delimiters reset the ISO 2022 state.
    pub fn decode(&self, bytes: &[u8], vr: VR) -> String {
        let whole = |encoding: &'static Encoding| {
            encoding.decode_without_bom_handling(bytes).0.into_owned()
        };
        match self.repertoire {
            Repertoire::Whole(encoding) => whole(encoding),
            Repertoire::Iso2022(sets) if sets.is_shift_jis(bytes) => whole(encoding_rs::SHIFT_JIS),
            Repertoire::Iso2022(sets) => Iso2022 {
                sets,
                person_name: vr == VR::PN,
                // ST, LT, UT and UR hold one value: their 05/12 is a character, not a delimiter.
                backslash_delimits: !matches!(vr, VR::ST | VR::LT | VR::UT | VR::UR),
            }
            .decode(bytes),
        }
    }
}

/// A value fit for a Prometheus label: NULs removed, other control characters (C0, DEL, C1)
/// replaced by a space, leading and trailing spaces trimmed, and cut to at most `max_chars`
/// characters on a char boundary, the last of them '…' when cut.
pub fn label_value(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .filter(|&c| c != '\0')
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim_matches(' ');
    if trimmed.chars().count() <= max_chars {
        return trimmed.to_owned();
    }
    if max_chars == 0 {
        return String::new();
    }
    let kept: String = trimmed.chars().take(max_chars - 1).collect();
    let mut out = kept.trim_end_matches(' ').to_owned();
    out.push('…');
    out
}

#[derive(Debug, Clone, Copy)]
enum Repertoire {
    /// A multi-byte set without code extensions: the whole value goes through one decoder, which
    /// knows that a 05/12 byte inside a two-byte character is no delimiter.
    Whole(&'static Encoding),
    /// Single-byte sets, and the ISO 2022 code extensions.
    Iso2022(Sets),
}

/// What the ISO 2022 decoder starts from.
#[derive(Debug, Clone, Copy)]
struct Sets {
    initial: State,
    /// Whether escape sequences are interpreted; without, ESC is just a control character.
    extensions: bool,
    /// The first G1 set declared, for bytes >= 0x80 seen while nothing is designated in G1
    /// (writers that omit the re-designation after a delimiter, or all escapes).
    fallback_g1: Option<G1>,
}

impl Sets {
    /// Under plain ISO_IR 13, bytes that JIS X 0201 lacks mean Shift_JIS (a superset of its
    /// katakana): what Orthanc 1.10 sends with its DefaultEncoding "Japanese".
    fn is_shift_jis(&self, bytes: &[u8]) -> bool {
        !self.extensions
            && self.initial.g1 == Some(G1::Katakana)
            && bytes.iter().any(|b| matches!(b, 0x80..=0xA0 | 0xE0..=0xFF))
    }
}

/// What is designated in G0 (bytes 0x21-0x7E) and G1 (bytes 0xA0-0xFF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    g0: G0,
    g1: Option<G1>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G0 {
    /// ISO-IR 6, ESC ( B.
    Ascii,
    /// JIS X 0201 romaji, ESC ( J: ASCII with YEN SIGN at 05/12 and OVERLINE at 07/14.
    JisRoman,
    /// JIS X 0201 katakana designated to G0, ESC ( I: not allowed by DICOM, seen in the wild.
    JisKatakana,
    /// JIS X 0208, ESC $ B (ISO 2022 IR 87).
    JisX0208,
    /// JIS X 0212, ESC $ ( D (ISO 2022 IR 159).
    JisX0212,
}

impl G0 {
    fn is_multi_byte(self) -> bool {
        matches!(self, G0::JisX0208 | G0::JisX0212)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G1 {
    /// A 96-character set: bytes 0xA0-0xFF through the encoding, whose upper half is the ISO
    /// 8859 part's (windows-1252 for Latin-1, windows-1254 for Latin-5, windows-874 for Thai,
    /// which differ from them only in 0x80-0x9F, decoded here as C1 controls).
    Upper(&'static Encoding),
    /// JIS X 0201 katakana, ESC ) I: 0xA1-0xDF.
    Katakana,
    /// KS X 1001, ESC $ ) C (ISO 2022 IR 149): byte pairs, decoded as EUC-KR.
    KsX1001,
    /// GB 2312, ESC $ ) A (ISO 2022 IR 58): byte pairs, decoded as GBK.
    Gb2312,
}

/// What one defined term designates.
#[derive(Debug, Clone, Copy)]
struct Term {
    g0: Option<G0>,
    g1: Option<G1>,
    whole: Option<&'static Encoding>,
    announces_extensions: bool,
}

impl Term {
    const DEFAULT: Term = Term {
        g0: Some(G0::Ascii),
        g1: None,
        whole: None,
        announces_extensions: false,
    };

    /// The defined terms of PS3.3 Tables C.12-2 to C.12-5. The single-byte sets are also
    /// accepted with the other prefix (`ISO_IR 13\ISO 2022 IR 87` is common); the multi-byte
    /// ones only as defined.
    fn lookup(term: &str) -> Option<Term> {
        let whole = match term {
            "ISO_IR 192" => Some(encoding_rs::UTF_8),
            "GB18030" => Some(encoding_rs::GB18030),
            "GBK" => Some(encoding_rs::GBK),
            _ => None,
        };
        if whole.is_some() {
            return Some(Term {
                g0: None,
                g1: None,
                whole,
                announces_extensions: false,
            });
        }
        let (number, extensions) = if let Some(n) = term.strip_prefix("ISO 2022 IR ") {
            (n, true)
        } else if let Some(n) = term.strip_prefix("ISO_IR ") {
            (n, false)
        } else {
            return None;
        };
        let upper = |e| Some((Some(G0::Ascii), Some(G1::Upper(e))));
        let (g0, g1) = match number {
            "6" => Some((Some(G0::Ascii), None)),
            "100" => upper(encoding_rs::WINDOWS_1252),
            "101" => upper(encoding_rs::ISO_8859_2),
            "109" => upper(encoding_rs::ISO_8859_3),
            "110" => upper(encoding_rs::ISO_8859_4),
            "144" => upper(encoding_rs::ISO_8859_5),
            "127" => upper(encoding_rs::ISO_8859_6),
            "126" => upper(encoding_rs::ISO_8859_7),
            "138" => upper(encoding_rs::ISO_8859_8),
            "148" => upper(encoding_rs::WINDOWS_1254),
            "203" => upper(encoding_rs::ISO_8859_15),
            "166" => upper(encoding_rs::WINDOWS_874),
            "13" => Some((Some(G0::JisRoman), Some(G1::Katakana))),
            "87" if extensions => Some((Some(G0::JisX0208), None)),
            "159" if extensions => Some((Some(G0::JisX0212), None)),
            "149" if extensions => Some((None, Some(G1::KsX1001))),
            "58" if extensions => Some((None, Some(G1::Gb2312))),
            _ => None,
        }?;
        Some(Term {
            g0,
            g1,
            whole: None,
            announces_extensions: extensions,
        })
    }
}

/// The escape sequences of PS3.3 Tables C.12-3 and C.12-4 (after ESC), and ESC $ @ (JIS C
/// 6226-1978, read as JIS X 0208) and ESC ( I, which some writers use.
fn designation(sequence: &[u8]) -> Option<Designation> {
    use Designation::{G0 as D0, G1 as D1};
    let upper = |e| Some(D1(G1::Upper(e)));
    match sequence {
        b"(B" => Some(D0(G0::Ascii)),
        b"(J" => Some(D0(G0::JisRoman)),
        b"(I" => Some(D0(G0::JisKatakana)),
        b"$B" | b"$@" | b"$(B" => Some(D0(G0::JisX0208)),
        b"$(D" => Some(D0(G0::JisX0212)),
        b")I" => Some(D1(G1::Katakana)),
        b"$)C" => Some(D1(G1::KsX1001)),
        b"$)A" => Some(D1(G1::Gb2312)),
        b"-A" => upper(encoding_rs::WINDOWS_1252),
        b"-B" => upper(encoding_rs::ISO_8859_2),
        b"-C" => upper(encoding_rs::ISO_8859_3),
        b"-D" => upper(encoding_rs::ISO_8859_4),
        b"-L" => upper(encoding_rs::ISO_8859_5),
        b"-G" => upper(encoding_rs::ISO_8859_6),
        b"-F" => upper(encoding_rs::ISO_8859_7),
        b"-H" => upper(encoding_rs::ISO_8859_8),
        b"-M" => upper(encoding_rs::WINDOWS_1254),
        b"-b" => upper(encoding_rs::ISO_8859_15),
        b"-T" => upper(encoding_rs::WINDOWS_874),
        _ => None,
    }
}

enum Designation {
    G0(G0),
    G1(G1),
}

const ESC: u8 = 0x1B;
const REPLACEMENT: char = '\u{FFFD}';

/// One decoding pass over one element value.
struct Iso2022 {
    sets: Sets,
    person_name: bool,
    backslash_delimits: bool,
}

impl Iso2022 {
    fn decode(&self, bytes: &[u8]) -> String {
        let mut out = Output::default();
        let mut state = self.sets.initial;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            match b {
                ESC if self.sets.extensions => i = self.escape(bytes, i, &mut state, &mut out),
                // PS3.5 6.1.2.5.3: the initial sets are active again before every control
                // character other than ESC.
                0x00..=0x1F => {
                    state = self.sets.initial;
                    out.push(char::from(b));
                }
                0x20 => out.push(' '),
                0x21..=0x7E => i = self.graphic_left(bytes, i, &mut state, &mut out),
                0x7F => out.push('\u{7F}'),
                0x80..=0xFF => i = self.graphic_right(bytes, i, state, &mut out),
            }
        }
        out.finish()
    }

    /// Reads the escape sequence whose ESC ended just before `i`; returns where decoding goes on.
    fn escape(&self, bytes: &[u8], mut i: usize, state: &mut State, out: &mut Output) -> usize {
        let start = i;
        while i < bytes.len() && (0x20..=0x2F).contains(&bytes[i]) {
            i += 1;
        }
        match bytes.get(i) {
            Some(0x30..=0x7E) => {
                match designation(&bytes[start..=i]) {
                    Some(Designation::G0(g0)) => state.g0 = g0,
                    Some(Designation::G1(g1)) => state.g1 = Some(g1),
                    // A delimiter cut an escape sequence short: keep the delimiter.
                    None if self.is_delimiter(bytes[i]) => {
                        out.push(REPLACEMENT);
                        return i;
                    }
                    None => out.push(REPLACEMENT),
                }
                i + 1
            }
            // Truncated: drop ESC and its intermediates, decode what follows as it stands.
            _ => {
                out.push(REPLACEMENT);
                i
            }
        }
    }

    /// Decodes the G0 character whose first byte is `bytes[i - 1]`.
    fn graphic_left(&self, bytes: &[u8], i: usize, state: &mut State, out: &mut Output) -> usize {
        let b = bytes[i - 1];
        match state.g0 {
            G0::Ascii | G0::JisRoman if self.is_delimiter(b) => {
                *state = self.sets.initial;
                out.push(char::from(b));
            }
            G0::Ascii => out.push(char::from(b)),
            G0::JisRoman => out.push(match b {
                0x5C => '\u{A5}',
                0x7E => '\u{203E}',
                _ => char::from(b),
            }),
            G0::JisKatakana => out.push(match b {
                0x21..=0x5F => katakana(b - 0x21),
                _ => REPLACEMENT,
            }),
            G0::JisX0208 | G0::JisX0212 => match bytes.get(i) {
                Some(&b2 @ 0x21..=0x7E) => {
                    if state.g0 == G0::JisX0212 {
                        out.push_bytes(encoding_rs::EUC_JP, &[0x8F, b | 0x80, b2 | 0x80]);
                    } else {
                        out.push_bytes(encoding_rs::EUC_JP, &[b | 0x80, b2 | 0x80]);
                    }
                    return i + 1;
                }
                // Truncated character: the next byte is decoded on its own.
                _ => out.push(REPLACEMENT),
            },
        }
        i
    }

    /// Decodes the G1 character whose first byte is `bytes[i - 1]`.
    fn graphic_right(&self, bytes: &[u8], i: usize, state: State, out: &mut Output) -> usize {
        let b = bytes[i - 1];
        match state.g1.or(self.sets.fallback_g1) {
            None => out.push(REPLACEMENT),
            Some(G1::Upper(_)) if b < 0xA0 => out.push(char::from(b)),
            Some(G1::Upper(encoding)) => out.push_bytes(encoding, &[b]),
            Some(G1::Katakana) => out.push(match b {
                0xA1..=0xDF => katakana(b - 0xA1),
                _ => REPLACEMENT,
            }),
            Some(g1 @ (G1::KsX1001 | G1::Gb2312)) => match bytes.get(i) {
                Some(&b2 @ 0x80..=0xFF) => {
                    let encoding = if g1 == G1::KsX1001 {
                        encoding_rs::EUC_KR
                    } else {
                        encoding_rs::GBK
                    };
                    out.push_bytes(encoding, &[b, b2]);
                    return i + 1;
                }
                _ => out.push(REPLACEMENT),
            },
        }
        i
    }

    fn is_delimiter(&self, b: u8) -> bool {
        (b == b'\\' && self.backslash_delimits) || (self.person_name && (b == b'=' || b == b'^'))
    }
}

/// Half-width katakana: JIS X 0201 0xA1-0xDF are U+FF61-U+FF9F in order.
fn katakana(offset: u8) -> char {
    char::from_u32(0xFF61 + u32::from(offset)).unwrap_or(REPLACEMENT)
}

/// Decoded text, with consecutive bytes for one encoding batched into one `encoding_rs` call.
/// Each batch holds whole characters only, so batching never joins bytes across characters.
#[derive(Default)]
struct Output {
    text: String,
    pending: Option<(&'static Encoding, Vec<u8>)>,
}

impl Output {
    fn push(&mut self, c: char) {
        self.flush();
        self.text.push(c);
    }

    fn push_bytes(&mut self, encoding: &'static Encoding, bytes: &[u8]) {
        match &mut self.pending {
            Some((e, buf)) if *e == encoding => buf.extend_from_slice(bytes),
            _ => {
                self.flush();
                self.pending = Some((encoding, bytes.to_vec()));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((encoding, buf)) = self.pending.take() {
            self.text
                .push_str(&encoding.decode_without_bom_handling(&buf).0);
        }
    }

    fn finish(mut self) -> String {
        self.flush();
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(charset: &str, bytes: &[u8], vr: VR) -> String {
        let sets = CharacterSets::parse(charset);
        assert!(
            sets.unknown_terms().is_empty(),
            "{charset:?}: {:?}",
            sets.unknown_terms()
        );
        sets.decode(bytes, vr)
    }

    /// (Specific Character Set, VR, bytes as the standard or the code table has them, text).
    type Case = (&'static str, VR, &'static [u8], &'static str);

    fn check(cases: &[Case]) {
        for (charset, vr, bytes, want) in cases {
            assert_eq!(
                decode(charset, bytes, *vr),
                *want,
                "{charset:?} {vr:?} {bytes:02x?}"
            );
        }
    }

    #[test]
    fn japanese_examples_of_ps3_5_annex_h() {
        check(&[
            // H.3.1: G0 is ASCII (empty value 1), kanji and kana through ESC $ B ... ESC ( B.
            (
                "\\ISO 2022 IR 87",
                VR::PN,
                b"Yamada^Tarou=\
                  \x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\
                  \x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
                "Yamada^Tarou=山田^太郎=やまだ^たろう",
            ),
            // H.3.2: value 1 is IR 13, so G1 holds half-width katakana from the start and
            // every return to G0 is ESC ( J.
            (
                "ISO 2022 IR 13\\ISO 2022 IR 87",
                VR::PN,
                b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\
                  \x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\
                  \x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
                "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
            ),
            // The same scheme with JIS codes from the JIS X 0208 / 0201 tables:
            // ｳ B3 ﾗ D7 ﾍ CD ﾞ DE ﾉ C9 ﾌ CC ｵ B5; 浦 313A 辺 4A55 伸 3F2D 夫 4957;
            // う 2426 ら 2469 べ 2459 の 244E ぶ 2456 お 242A.
            (
                "ISO 2022 IR 13\\ISO 2022 IR 87",
                VR::PN,
                b"\xb3\xd7\xcd\xde^\xc9\xcc\xde\xb5=\
                  \x1b$B1:JU\x1b(J^\x1b$B?-IW\x1b(J=\
                  \x1b$B$&$i$Y\x1b(J^\x1b$B$N$V$*\x1b(J",
                "ｳﾗﾍﾞ^ﾉﾌﾞｵ=浦辺^伸夫=うらべ^のぶお",
            ),
            // JIS X 0212 (IR 159): 鷗 is 6C3F there; 森 3F39 外 3330 も 2462 り 246A
            // お 242A う 2426 が 242C い 2424 in JIS X 0208.
            (
                "ISO 2022 IR 6\\ISO 2022 IR 87\\ISO 2022 IR 159",
                VR::PN,
                b"Mori^Ogai=\x1b$B?9\x1b(B^\x1b$(Dl?\x1b$B30\x1b(B=\
                  \x1b$B$b$j\x1b(B^\x1b$B$*$&$,$$\x1b(B",
                "Mori^Ogai=森^鷗外=もり^おうがい",
            ),
            // ESC ( I (katakana in G0) is not DICOM but some writers send it.
            ("\\ISO 2022 IR 13", VR::LO, b"\x1b(I3WM^\x1b(B", "ｳﾗﾍﾞ"),
        ]);
    }

    #[test]
    fn korean_example_of_ps3_5_annex_i() {
        // I.2: KS X 1001 in G1, designated again after each delimiter. 洪 FBF3 吉 D1CE 洞 D4D7
        // 홍 C8AB 길 B1E6 동 B5BF.
        let bytes: &[u8] = b"Hong^Gildong=\
            \x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\
            \x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf";
        check(&[
            (
                "\\ISO 2022 IR 149",
                VR::PN,
                bytes,
                "Hong^Gildong=洪^吉洞=홍^길동",
            ),
            // Writers that designate once, or never: the declared G1 set is used.
            (
                "\\ISO 2022 IR 149",
                VR::PN,
                b"Hong^Gildong=\x1b$)C\xfb\xf3^\xd1\xce\xd4\xd7=\xc8\xab^\xb1\xe6\xb5\xbf",
                "Hong^Gildong=洪^吉洞=홍^길동",
            ),
            (
                "ISO 2022 IR 149",
                VR::LO,
                b"\xc8\xab\xb1\xe6\xb5\xbf",
                "홍길동",
            ),
            // The state resets at the value delimiter and before CR LF.
            (
                "\\ISO 2022 IR 149",
                VR::LT,
                b"\x1b$)C\xc8\xab\\\x1b$)C\xb1\xe6\r\n\x1b$)C\xb5\xbf",
                "홍\\길\r\n동",
            ),
        ]);
    }

    #[test]
    fn chinese_examples_of_ps3_5_annexes_j_and_k() {
        check(&[
            // J: GB18030, no code extensions. 王 CDF5 小 D0A1 东 B6AB.
            (
                "GB18030",
                VR::PN,
                b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
                "Wang^XiaoDong=王^小东=",
            ),
            // J: multi-line text; 中 D6D0 文 CEC4.
            (
                "GB18030",
                VR::LT,
                b"The first line includes\xd6\xd0\xce\xc4.\r\nThe second line.",
                "The first line includes中文.\r\nThe second line.",
            ),
            // GB18030 four-byte form: 홍 is 83 36 9C 34.
            ("GB18030", VR::LO, b"\x836\x9c4", "홍"),
            // K: GB 2312 in G1 (ISO 2022 IR 58). 张 D5C5.
            (
                "\\ISO 2022 IR 58",
                VR::PN,
                b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=",
                "Zhang^XiaoDong=张^小东=",
            ),
            // GBK: 乗 is 81 5C, whose second byte is no value delimiter.
            ("GBK", VR::LO, b"\x81\x5c\\\xcd\xf5", "乗\\王"),
            ("GB18030", VR::LO, b"\x81\x5c\\\xcd\xf5", "乗\\王"),
        ]);
    }

    #[test]
    fn single_byte_sets_from_their_code_tables() {
        check(&[
            ("", VR::PN, b"Doe^John", "Doe^John"),
            ("ISO_IR 6", VR::PN, b"Doe^John", "Doe^John"),
            // Latin-1: u FC, e E9; 0x80 is a C1 control, not windows-1252's euro sign.
            ("ISO_IR 100", VR::PN, b"M\xfcller^Ren\xe9", "Müller^René"),
            ("ISO_IR 100", VR::LO, b"\x80", "\u{80}"),
            ("ISO_IR 101", VR::LO, b"\xa3", "Ł"),
            ("ISO_IR 109", VR::LO, b"\xa1", "Ħ"),
            ("ISO_IR 110", VR::LO, b"\xa2", "ĸ"),
            // Cyrillic (ISO 8859-5): И B8 в D2 а D0 н DD о DE.
            (
                "ISO_IR 144",
                VR::PN,
                b"\xb8\xd2\xd0\xdd\xde\xd2^\xb8\xd2\xd0\xdd",
                "Иванов^Иван",
            ),
            ("ISO_IR 127", VR::LO, b"\xc7", "ا"),
            ("ISO_IR 126", VR::LO, b"\xc1", "Α"),
            ("ISO_IR 138", VR::LO, b"\xe0", "א"),
            ("ISO_IR 148", VR::LO, b"\xd0\xfd", "Ğı"),
            ("ISO_IR 203", VR::LO, b"\xa4", "€"),
            // TIS-620: ส CA ว C7 ั D1 ด B4 ี D5.
            ("ISO_IR 166", VR::LO, b"\xca\xc7\xd1\xca\xb4\xd5", "สวัสดี"),
            // JIS X 0201: YEN SIGN and OVERLINE in G0, katakana in G1; 05/12 still separates
            // values of a multi-valued VR.
            ("ISO_IR 13", VR::LT, b"\x5c\x7e\xb1", "¥‾ｱ"),
            ("ISO_IR 13", VR::LO, b"A\x5cB\x7e", "A\\B‾"),
            // UTF-8: Æ C3 86, ø C3 B8, ë C3 AB.
            (
                "ISO_IR 192",
                VR::PN,
                b"\xc3\x86r\xc3\xb8^Zo\xc3\xab",
                "Ærø^Zoë",
            ),
        ]);
    }

    #[test]
    fn single_byte_sets_with_code_extensions() {
        check(&[
            (
                "\\ISO 2022 IR 144",
                VR::PN,
                b"Ivanov=\x1b-L\xb8\xd2\xd0\xdd\xde\xd2",
                "Ivanov=Иванов",
            ),
            // Value 1 is Latin-1, so G1 is Latin-1 again after the '=' that follows Greek.
            (
                "ISO 2022 IR 100\\ISO 2022 IR 126",
                VR::PN,
                b"Buc=\x1b-F\xc4=\xe9",
                "Buc=Δ=é",
            ),
            ("ISO 2022 IR 166", VR::LO, b"\xa1", "ก"),
            ("ISO 2022 IR 6\\ISO 2022 IR 203", VR::LO, b"\x1b-b\xa4", "€"),
        ]);
    }

    #[test]
    fn delimiters_reset_the_state_only_in_single_byte_g0() {
        check(&[
            // Multi-valued LO: the '\' separates values and restores ASCII.
            (
                "\\ISO 2022 IR 87",
                VR::LO,
                b"\x1b$B;3ED\x1b(B\\\x1b$BB@O:\x1b(B",
                "山田\\太郎",
            ),
            // In JIS X 0208, 5C 21 is a kanji (棔), not a delimiter.
            ("\\ISO 2022 IR 87", VR::LO, b"\x1b$B\x5c\x21\x1b(B", "棔"),
            // A writer that forgets ESC ( B before CR LF: the line end resets anyway.
            (
                "\\ISO 2022 IR 87",
                VR::LT,
                b"\x1b$B;3ED\r\nAB",
                "山田\r\nAB",
            ),
            // Without ESC ( B before a PN delimiter, the '^' is half of the kanji 5E41.
            ("\\ISO 2022 IR 87", VR::PN, b"\x1b$B;3^A", "山涸"),
        ]);
    }

    #[test]
    fn broken_input_becomes_replacement_characters() {
        const R: &str = "\u{FFFD}";
        let japanese = "\\ISO 2022 IR 87";
        let korean = "\\ISO 2022 IR 149";
        let cases: &[(&str, VR, &[u8], String)] = &[
            (japanese, VR::LO, b"AB\x1b", format!("AB{R}")),
            (japanese, VR::LO, b"AB\x1b$(", format!("AB{R}")),
            (japanese, VR::LO, b"AB\x1b%GCD", format!("AB{R}CD")),
            (japanese, VR::PN, b"A\x1b$^B", format!("A{R}^B")),
            (japanese, VR::LO, b"\x1b$B;", R.to_owned()),
            (japanese, VR::LO, b"\x1b$B;\x1b(BA", format!("{R}A")),
            (japanese, VR::LO, b"\x1b$B~~\x1b(B", R.to_owned()),
            (japanese, VR::LO, b"\xb1", R.to_owned()),
            (korean, VR::LO, b"\x1b$)C\xc8", R.to_owned()),
            (korean, VR::LO, b"\x1b$)C\xc8A", format!("{R}A")),
            ("", VR::LO, b"caf\xe9", format!("caf{R}")),
            ("ISO_IR 13", VR::LO, b"\xe0", R.to_owned()),
            ("ISO 2022 IR 13", VR::LO, b"\x8eR", format!("{R}R")),
            ("ISO_IR 192", VR::LO, b"\xe5\xb1", R.to_owned()),
            ("GB18030", VR::LO, b"\x81", R.to_owned()),
            // Without code extensions ESC is only a control character.
            ("ISO_IR 100", VR::LO, b"\x1b-L\xe9", "\u{1b}-Lé".to_owned()),
        ];
        for (charset, vr, bytes, want) in cases {
            assert_eq!(
                &decode(charset, bytes, *vr),
                want,
                "{charset:?} {bytes:02x?}"
            );
        }
    }

    #[test]
    fn no_input_panics() {
        let charsets = [
            "",
            "ISO_IR 100",
            "ISO_IR 13",
            "ISO_IR 192",
            "GB18030",
            "GBK",
            "\\ISO 2022 IR 87",
            "ISO 2022 IR 13\\ISO 2022 IR 87\\ISO 2022 IR 159",
            "\\ISO 2022 IR 149",
            "\\ISO 2022 IR 58",
            "ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 166",
        ];
        let mut seed: u32 = 0x2545_f491;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..2000 {
            let len = (next() % 24) as usize;
            // Bias towards ESC, delimiters and the bytes escape sequences are made of.
            let bytes: Vec<u8> = (0..len)
                .map(|_| match next() % 8 {
                    0 => ESC,
                    1 => b"\\=^$()-"[(next() % 7) as usize],
                    _ => (next() & 0xFF) as u8,
                })
                .collect();
            for charset in charsets {
                for vr in [VR::PN, VR::LO, VR::LT, VR::UC] {
                    let text = CharacterSets::parse(charset).decode(&bytes, vr);
                    let _ = label_value(&text, 8);
                }
            }
        }
    }

    #[test]
    fn unknown_terms_fall_back_to_the_default_repertoire() {
        let cases: &[(&str, &[&str], &[u8], &str)] = &[
            ("ISO_IR 999", &["ISO_IR 999"], b"Doe\xe9", "Doe\u{FFFD}"),
            // Not a defined term: IR 87 exists only with code extensions.
            ("ISO_IR 87", &["ISO_IR 87"], b"Doe", "Doe"),
            (
                "\\ISO 2022 IR 87\\x-unknown",
                &["x-unknown"],
                b"\x1b$B;3ED\x1b(B",
                "山田",
            ),
            ("  ISO_IR 100 ", &[], b"\xe9", "é"),
            ("ISO_IR 100\0", &[], b"\xe9", "é"),
            ("\\", &[], b"Doe", "Doe"),
        ];
        for (charset, unknown, bytes, want) in cases {
            let sets = CharacterSets::parse(charset);
            assert_eq!(sets.unknown_terms(), *unknown, "{charset:?}");
            assert_eq!(sets.decode(bytes, VR::PN), *want, "{charset:?}");
        }
    }

    #[test]
    fn label_values_are_clean_and_bounded() {
        let cases: &[(&str, usize, &str)] = &[
            ("Doe^John   \0\0", 64, "Doe^John"),
            ("  Doe^John", 64, "Doe^John"),
            ("a\tb\r\nc\u{7f}d\u{85}e\u{1b}f", 64, "a b  c d e f"),
            ("山田^太郎", 5, "山田^太郎"),
            ("山田^太郎", 4, "山田^…"),
            ("ab  cd", 4, "ab…"),
            ("abc", 1, "…"),
            ("abc", 0, ""),
            ("\u{FFFD}", 4, "\u{FFFD}"),
        ];
        for (text, max, want) in cases {
            assert_eq!(label_value(text, *max), *want, "{text:?} {max}");
        }
    }

    /// C-FIND answers of Orthanc 1.10.1 for each Asian `DefaultEncoding`, byte for byte as
    /// captured with findscu: (DefaultEncoding, SpecificCharacterSet, PatientName, original).
    #[test]
    fn orthanc_1_10_c_find_answers() {
        let cases: &[(&str, &str, &[u8], &str)] = &[
            // "Japanese" declares ISO_IR 13 but writes kanji in Shift_JIS (山 8E52 田 9363 ...).
            (
                "Japanese",
                "ISO_IR 13 ",
                b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3",
                "ﾔﾏﾀﾞ^ﾀﾛｳ",
            ),
            (
                "Japanese",
                "ISO_IR 13 ",
                b"Yamada^Tarou=\x8e\x52\x93\x63^\x91\xbe\x98\x59=\
                  \x82\xe2\x82\xdc\x82\xbe^\x82\xbd\x82\xeb\x82\xa4",
                "Yamada^Tarou=山田^太郎=やまだ^たろう",
            ),
            // "JapaneseKanji": one value, no leading backslash, escapes as in PS3.5 H.3.1.
            (
                "JapaneseKanji",
                "ISO 2022 IR 87",
                b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\
                  \x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
                "Yamada^Tarou=山田^太郎=やまだ^たろう",
            ),
            // "Korean": one value and raw EUC-KR, no escape sequences at all.
            (
                "Korean",
                "ISO 2022 IR 149 ",
                b"Hong^Gildong=\xfb\xf3^\xd1\xce\xd4\xd7=\xc8\xab^\xb1\xe6\xb5\xbf",
                "Hong^Gildong=洪^吉洞=홍^길동",
            ),
            (
                "Chinese",
                "GB18030 ",
                b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
                "Wang^XiaoDong=王^小东=",
            ),
            // "SimplifiedChinese": one value and raw GB 2312, no escape sequences.
            (
                "SimplifiedChinese",
                "ISO 2022 IR 58",
                b"Zhang^XiaoDong=\xd5\xc5^\xd0\xa1\xb6\xab=",
                "Zhang^XiaoDong=张^小东=",
            ),
        ];
        for (default_encoding, charset, bytes, want) in cases {
            let sets = CharacterSets::parse(charset);
            assert!(sets.unknown_terms().is_empty(), "{default_encoding}");
            assert_eq!(sets.decode(bytes, VR::PN), *want, "{default_encoding}");
        }
    }
}
