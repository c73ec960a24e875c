//! Small but valid DICOM studies for integration tests.
//!
//! [`generate`] makes a deterministic set of [`Study`] descriptions (seeded, so a failing test
//! sees the same data again); [`Study::instance`] turns one of them into the bytes of a Part-10
//! file that real PACS accept. Load them into [`super::peers::Orthanc`] with `upload` or into
//! `Dcmqrscp` with [`Study::write_files`] + `store_dir` / `start_loaded`, then compute the
//! expected answer from the `Study` values that were loaded (all of them, or only the first
//! `count` instances of some, for partially transferred studies).
//!
//! Every instance is a Secondary Capture image (8x8, MONOCHROME2, 8 bits) in Explicit VR Little
//! Endian, one series per study unless `series` says more. The text is really encoded in the study's [`Charset`]:
//! dicom-object 0.10 switches its text encoder when it writes Specific Character Set (0008,0005),
//! which comes before every other text attribute, so a Cyrillic name is written as ISO-8859-5,
//! a Latin-1 name as ISO-8859-1 and a UTF-8 name as UTF-8. A name that the charset cannot encode
//! makes [`Study::instance`] panic rather than write a wrong file.
//!
//! The same patient name always comes with the same Patient ID, sex and birth date, so studies of
//! one patient never disagree about the patient (Orthanc keeps the first demographics it sees
//! for a Patient ID).
//!
//! Charsets at the peers (checked with Orthanc 1.10 and dcmqrscp 3.6.7): Orthanc's REST API
//! returns every name exactly as generated, but its C-FIND answers are converted to its
//! `DefaultEncoding`, Latin-1 unless configured otherwise, which silently drops what Latin-1
//! cannot hold (`Иванов^Иван` comes back as `^`); start it with
//! `json!({"DefaultEncoding": "Utf8"})` to get every name back in C-FIND (as `ISO_IR 192`).
//! dcmqrscp answers with each study's own Specific Character Set and bytes.


use std::fs;
use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

/// SOP Class UID of every generated instance: Secondary Capture Image Storage.
pub const SOP_CLASS_UID: &str = uids::SECONDARY_CAPTURE_IMAGE_STORAGE;

/// Modalities used by [`generate`].
pub const MODALITIES: [&str; 5] = ["CT", "MR", "CR", "US", "DX"];

/// Rows and columns of the generated images.
const IMAGE_SIZE: u16 = 8;

/// The character set of a study's text attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Charset {
    /// No Specific Character Set: the default repertoire, ASCII names only.
    Default,
    /// `ISO_IR 100` (ISO-8859-1): names with umlauts and accents.
    Latin1,
    /// `ISO_IR 144` (ISO-8859-5): Cyrillic names.
    Cyrillic,
    /// `ISO_IR 192` (UTF-8): CJK, Greek, Korean, Vietnamese names.
    Utf8,
}

impl Charset {
    /// All four.
    pub const ALL: [Charset; 4] = [
        Charset::Default,
        Charset::Latin1,
        Charset::Cyrillic,
        Charset::Utf8,
    ];

    /// The value of Specific Character Set (0008,0005), `None` for [`Charset::Default`] (the
    /// attribute is then absent).
    pub fn specific_character_set(self) -> Option<&'static str> {
        match self {
            Charset::Default => None,
            Charset::Latin1 => Some("ISO_IR 100"),
            Charset::Cyrillic => Some("ISO_IR 144"),
            Charset::Utf8 => Some("ISO_IR 192"),
        }
    }

    /// Patients of this charset: (name, sex, birth date or "").
    fn patients(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            Charset::Default => &[
                ("Smith^John", "M", "19620315"),
                ("Doe^Jane", "F", "19851102"),
                ("Brown^Robert^A", "M", ""),
                ("Taylor^Emily", "F", "19990720"),
                ("Garcia^Carlos", "M", "19580101"),
                ("Okafor^Ngozi", "F", "19741208"),
            ],
            Charset::Latin1 => &[
                ("Müller^Jürgen", "M", "19550607"),
                ("Schäfer^Käthe", "F", "19700219"),
                ("Dupont^Hélène", "F", "19880930"),
                ("Ibáñez^José", "M", ""),
                ("Sørensen^Åse", "F", "19661124"),
                ("Weiß^Jörg", "M", "19770412"),
            ],
            Charset::Cyrillic => &[
                ("Иванов^Иван", "M", "19600505"),
                ("Петрова^Мария", "F", "19820817"),
                ("Смирнов^Алексей^Петрович", "M", ""),
                ("Кузнецова^Ольга", "F", "19751230"),
                ("Щербаков^Юрий", "M", "19690303"),
                ("Ёлкина^Наталья", "F", "19910614"),
            ],
            Charset::Utf8 => &[
                ("山田^太郎", "M", "19730708"),
                ("鈴木^花子", "F", "19860125"),
                ("Παπαδόπουλος^Γιώργος", "M", "19640911"),
                ("Οικονόμου^Ελένη", "F", ""),
                ("김^민준", "M", "19950402"),
                ("Nguyễn^Thị Hương", "F", "19800816"),
            ],
        }
    }

    /// Prefix of the Patient IDs of this charset's patients.
    fn patient_id_prefix(self) -> &'static str {
        match self {
            Charset::Default => "PAT-A",
            Charset::Latin1 => "PAT-L",
            Charset::Cyrillic => "PAT-C",
            Charset::Utf8 => "PAT-U",
        }
    }
}

/// One study: everything that goes into its instances. Build it with [`generate`] or by hand
/// (e.g. clone a generated one and change its date); the fields are all there is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Study {
    /// Digits and dots, at most 64 characters; series and SOP Instance UIDs extend it.
    pub study_instance_uid: String,
    /// As UTF-8 text, e.g. "Müller^Jürgen"; encoded in `charset` in the files.
    pub patient_name: String,
    pub patient_id: String,
    /// `M` or `F`.
    pub patient_sex: String,
    /// YYYYMMDD, or empty.
    pub patient_birth_date: String,
    pub study_id: String,
    pub accession_number: String,
    /// YYYYMMDD.
    pub study_date: String,
    /// HHMMSS.
    pub study_time: String,
    /// The Modality of the study's series: CT, MR, CR, US, DX…
    pub modality: String,
    /// Number of instances (images) in the study.
    pub instance_count: usize,
    /// Number of series (1 from [`generate`]): the instances are split among them in order,
    /// series 1 taking the first ones (see [`Study::series_of`]).
    pub series: usize,
    pub charset: Charset,
}

impl Study {
    /// Series Instance UID of series `number` (1-based, its Series Number).
    pub fn series_instance_uid(&self, number: usize) -> String {
        format!("{}.{number}", self.study_instance_uid)
    }

    /// The series (1-based) instance `index` belongs to: the instances are split among the
    /// series in order, as evenly as they go.
    pub fn series_of(&self, index: usize) -> usize {
        index * self.series.max(1) / self.instance_count.max(1) + 1
    }

    /// How many instances series `number` holds.
    pub fn series_instance_count(&self, number: usize) -> usize {
        (0..self.instance_count)
            .filter(|&i| self.series_of(i) == number)
            .count()
    }

    /// SOP Instance UID of instance `index` (0-based; Instance Number `index + 1`).
    pub fn sop_instance_uid(&self, index: usize) -> String {
        format!(
            "{}.{}.{}",
            self.study_instance_uid,
            self.series_of(index),
            index + 1
        )
    }

    /// The Part-10 file bytes (preamble, meta group, data set) of instance `index` (0-based).
    pub fn instance(&self, index: usize) -> Vec<u8> {
        assert!(
            index < self.instance_count,
            "study {} has {} instances, there is no instance {index}",
            self.study_instance_uid,
            self.instance_count
        );
        // dicom-rs would write non-ASCII text without Specific Character Set as Latin-1 (its
        // "default" codec is ISO-8859-1), which is not valid DICOM: refuse it.
        if self.charset == Charset::Default {
            for (what, value) in [
                ("patient name", &self.patient_name),
                ("patient ID", &self.patient_id),
                ("study ID", &self.study_id),
                ("accession number", &self.accession_number),
            ] {
                assert!(
                    value.is_ascii(),
                    "{what} {value:?} of study {} is not ASCII, which Charset::Default requires",
                    self.study_instance_uid
                );
            }
        }
        let text = |tag, vr, value: &str| {
            if value.is_empty() {
                DataElement::new(tag, vr, PrimitiveValue::Empty)
            } else {
                DataElement::new(tag, vr, PrimitiveValue::from(value))
            }
        };
        let number = |tag, vr, value: u16| DataElement::new(tag, vr, PrimitiveValue::from(value));

        let mut obj = InMemDicomObject::from_element_iter([
            text(tags::SOP_CLASS_UID, VR::UI, SOP_CLASS_UID),
            text(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                &self.sop_instance_uid(index),
            ),
            text(tags::STUDY_DATE, VR::DA, &self.study_date),
            text(tags::STUDY_TIME, VR::TM, &self.study_time),
            text(tags::ACCESSION_NUMBER, VR::SH, &self.accession_number),
            text(tags::MODALITY, VR::CS, &self.modality),
            text(tags::CONVERSION_TYPE, VR::CS, "WSD"),
            text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
            text(tags::PATIENT_NAME, VR::PN, &self.patient_name),
            text(tags::PATIENT_ID, VR::LO, &self.patient_id),
            text(tags::PATIENT_BIRTH_DATE, VR::DA, &self.patient_birth_date),
            text(tags::PATIENT_SEX, VR::CS, &self.patient_sex),
            text(tags::STUDY_INSTANCE_UID, VR::UI, &self.study_instance_uid),
            text(
                tags::SERIES_INSTANCE_UID,
                VR::UI,
                &self.series_instance_uid(self.series_of(index)),
            ),
            text(tags::STUDY_ID, VR::SH, &self.study_id),
            text(
                tags::SERIES_NUMBER,
                VR::IS,
                &self.series_of(index).to_string(),
            ),
            text(tags::INSTANCE_NUMBER, VR::IS, &(index + 1).to_string()),
            text(tags::PATIENT_ORIENTATION, VR::CS, ""),
            number(tags::SAMPLES_PER_PIXEL, VR::US, 1),
            text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            number(tags::ROWS, VR::US, IMAGE_SIZE),
            number(tags::COLUMNS, VR::US, IMAGE_SIZE),
            number(tags::BITS_ALLOCATED, VR::US, 8),
            number(tags::BITS_STORED, VR::US, 8),
            number(tags::HIGH_BIT, VR::US, 7),
            number(tags::PIXEL_REPRESENTATION, VR::US, 0),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::from(self.pixels(index)),
            ),
        ]);
        if let Some(code) = self.charset.specific_character_set() {
            obj.put(text(tags::SPECIFIC_CHARACTER_SET, VR::CS, code));
        }
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
            .unwrap_or_else(|e| panic!("cannot build the file meta group for {self:?}: {e}"));
        let mut bytes = Vec::new();
        if let Err(e) = file.write_all(&mut bytes) {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                why = format!("{why}: {cause}");
                source = cause.source();
            }
            panic!("cannot encode instance {index} of {self:?} (text not in its charset?): {why}");
        }
        bytes
    }

    /// The file bytes of all instances.
    pub fn instances(&self) -> Vec<Vec<u8>> {
        self.first_instances(self.instance_count)
    }

    /// The file bytes of the first `count` instances (a partially transferred study).
    pub fn first_instances(&self, count: usize) -> Vec<Vec<u8>> {
        assert!(
            count <= self.instance_count,
            "study {} has {} instances, cannot take the first {count}",
            self.study_instance_uid,
            self.instance_count
        );
        (0..count).map(|index| self.instance(index)).collect()
    }

    /// The file bytes of the instances whose index `keep` accepts (e.g. every series but one).
    pub fn instances_where(&self, keep: impl Fn(usize) -> bool) -> Vec<Vec<u8>> {
        (0..self.instance_count)
            .filter(|&i| keep(i))
            .map(|index| self.instance(index))
            .collect()
    }

    /// Writes the first `count` instances into `dir` (which must exist) as
    /// `<SOP Instance UID>.dcm`, so several studies can share a directory; returns the paths.
    pub fn write_files(&self, dir: &Path, count: usize) -> Vec<PathBuf> {
        self.first_instances(count)
            .into_iter()
            .enumerate()
            .map(|(index, bytes)| {
                let path = dir.join(format!("{}.dcm", self.sop_instance_uid(index)));
                fs::write(&path, bytes)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                path
            })
            .collect()
    }

    /// A small deterministic gradient, different per study and instance.
    fn pixels(&self, index: usize) -> Vec<u8> {
        let salt = self
            .study_instance_uid
            .bytes()
            .fold(index as u64, |acc, b| {
                acc.wrapping_mul(31).wrapping_add(b.into())
            });
        let size = u64::from(IMAGE_SIZE);
        (0..size * size)
            .map(|i| ((i / size) * 16 + (i % size) * 2 + salt) as u8)
            .collect()
    }
}

/// A deterministic set of `n` studies for `seed`: the same arguments give the same studies, and
/// different seeds give different Study Instance UIDs (`2.25.<decimal>`, unique per
/// `(seed, index)`). Study ID and Accession Number are unique within one call.
///
/// Each group of four studies (0–3, 4–7, …) has all four [`Charset`]s, in a seeded order; study
/// dates and times cycle through `when` (pairs of YYYYMMDD, HHMMSS; must not be empty); the
/// patient (from a pool of six per charset), the modality (from [`MODALITIES`]) and the number of
/// instances (1–5) are drawn from the seed.
pub fn generate<D, T>(n: usize, seed: u64, when: &[(D, T)]) -> Vec<Study>
where
    D: AsRef<str>,
    T: AsRef<str>,
{
    assert!(!when.is_empty(), "generate needs at least one (date, time)");
    let seed_hash = splitmix64(seed);
    let mut state = seed_hash;
    let mut next = move |bound: usize| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (splitmix64(state) % bound as u64) as usize
    };
    let mut charsets = Charset::ALL;
    (0..n)
        .map(|i| {
            if i % charsets.len() == 0 {
                // A fresh seeded order for each group of four (Fisher-Yates), so that charsets
                // do not line up with `when`, which cycles too.
                for j in (1..charsets.len()).rev() {
                    charsets.swap(j, next(j + 1));
                }
            }
            let charset = charsets[i % charsets.len()];
            let patients = charset.patients();
            let patient = next(patients.len());
            let (name, sex, birth_date) = patients[patient];
            let (date, time) = &when[i % when.len()];
            // splitmix64 is a bijection, so (seed, i) -> this number is injective for i < 2^64.
            let uid_number =
                (u128::from(seed_hash) << 64) | u128::from(splitmix64(seed_hash ^ i as u64));
            Study {
                study_instance_uid: format!("2.25.{uid_number}"),
                patient_name: name.to_owned(),
                patient_id: format!("{}{:02}", charset.patient_id_prefix(), patient + 1),
                patient_sex: sex.to_owned(),
                patient_birth_date: birth_date.to_owned(),
                study_id: format!("S{}", i + 1),
                accession_number: format!("A{:06X}{:05}", seed_hash >> 40, i + 1),
                study_date: date.as_ref().to_owned(),
                study_time: time.as_ref().to_owned(),
                modality: MODALITIES[next(MODALITIES.len())].to_owned(),
                instance_count: 1 + next(5),
                series: 1,
                charset,
            }
        })
        .collect()
}

/// The splitmix64 finalizer: a bijective mix of 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
