//! The module's `send_check` block: the destination and how to reach it, the window, the
//! strategy for the destination's queries, the bounds, the opt-in labels; their defaults, and
//! the checks the loader runs on them ([`SendCheckOptions::validate`]).
//!
//! Nothing here talks to a peer: the probe reads these options once validated and never
//! re-checks what [`SendCheckOptions::validate`] guaranteed.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use dicom_core::VR;
use serde::{Deserialize, Serialize};

use crate::dicom::query::{self, QueryKeys};
use crate::prober::checks::{
    self, check_pdu, check_query, default_max_matches, reserved_keys, ModuleError, ProberKind,
};
use crate::settings::{DicomOverrides, PromDuration, TargetSpec, TimeZone};
use crate::target::Target;

/// The `send_check` prober: did the source's recent studies reach the destination, whole?
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SendCheckOptions {
    /// The destination PACS, `AET@host:port`, or `from_request` (the request's
    /// `destination` parameter); the probe's target is the source.
    pub destination: DestinationSpec,
    /// Connection settings for the destination where they differ from the module's `dicom`.
    #[serde(default, skip_serializing_if = "DicomOverrides::is_empty")]
    pub destination_dicom: DicomOverrides,
    /// Studies whose StudyDate/StudyTime lie in [now − lookback, now] are checked.
    #[serde(default = "default_lookback")]
    pub lookback: PromDuration,
    /// Studies younger than this are pending, not judged yet.
    #[serde(default = "default_grace")]
    pub grace: PromDuration,
    /// How StudyDate/StudyTime are read; default: the exporter's local zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZone>,
    /// Extra C-FIND keys narrowing the source query (e.g. ModalitiesInStudy).
    #[serde(default)]
    pub query: QueryKeys,
    /// Also flag studies that arrived with fewer instances.
    #[serde(default = "default_true")]
    pub compare_instances: bool,
    /// DICOM keywords of study attributes asked for on both sides: a study both hold whose
    /// values differ is mismatched (the rules: the README, and `attributes.rs`).
    #[serde(default)]
    pub compare_attributes: Vec<String>,
    /// Compare those values regardless of letter case.
    #[serde(default)]
    pub compare_ignore_case: bool,
    /// For each incomplete study, compare its series on both sides (SERIES-level C-FIND).
    #[serde(default)]
    pub series_detail: bool,
    /// The incomplete studies, oldest first, whose series are compared in one probe.
    #[serde(default = "default_series_detail_studies")]
    pub max_series_detail_studies: usize,
    #[serde(default)]
    pub destination_query: DestinationQuery,
    /// Cap on the per-study series.
    #[serde(default = "default_max_listed")]
    pub max_listed_studies: usize,
    /// Opt-in identifying labels on the per-study series (patient data: see the README).
    #[serde(default)]
    pub labels: Vec<StudyLabel>,
    /// Most matches one side may return before the probe gives up (memory bound).
    #[serde(default = "default_max_matches")]
    pub max_matches: usize,
    /// Most single-UID queries `auto` sends to confirm studies one by one (when the
    /// destination's UID list matching is unproven or broken); past it the probe fails.
    #[serde(default = "default_max_confirmations")]
    pub max_confirmations: usize,
}

/// Where a transfer check's destination comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestinationSpec {
    /// Named in the module.
    Fixed(Target),
    /// The request's `destination` parameter (a route from relabeling), held to
    /// allowed_targets like the target.
    FromRequest,
}

/// How `destination: from_request` is written.
const FROM_REQUEST: &str = "from_request";

impl DestinationSpec {
    /// Whether the destination is the request's (a route).
    pub fn is_from_request(&self) -> bool {
        *self == DestinationSpec::FromRequest
    }

    /// The destination named in the module, if it names one.
    pub fn fixed(&self) -> Option<&Target> {
        match self {
            DestinationSpec::Fixed(target) => Some(target),
            DestinationSpec::FromRequest => None,
        }
    }
}

impl fmt::Display for DestinationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationSpec::Fixed(target) => target.fmt(f),
            DestinationSpec::FromRequest => f.write_str(FROM_REQUEST),
        }
    }
}

impl<'de> Deserialize<'de> for DestinationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == FROM_REQUEST {
            return Ok(DestinationSpec::FromRequest);
        }
        TargetSpec::deserialize(serde::de::value::StringDeserializer::<D::Error>::new(text))
            .map(|spec| DestinationSpec::Fixed(spec.0))
    }
}

impl Serialize for DestinationSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationQuery {
    /// `date_range`, then every study it did not find confirmed by UID queries whose
    /// answers prove themselves (see the README's send_check section).
    #[default]
    Auto,
    DateRange,
    UidList,
    PerStudy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyLabel {
    PatientName,
    PatientId,
    StudyId,
    AccessionNumber,
    Modality,
    StudyDate,
}

impl StudyLabel {
    /// The label that opts in to the data of the attribute `keyword`, if one does.
    pub fn of_keyword(keyword: &str) -> Option<StudyLabel> {
        Some(match keyword {
            "PatientName" => StudyLabel::PatientName,
            "PatientID" => StudyLabel::PatientId,
            "StudyID" => StudyLabel::StudyId,
            "AccessionNumber" => StudyLabel::AccessionNumber,
            "ModalitiesInStudy" => StudyLabel::Modality,
            "StudyDate" => StudyLabel::StudyDate,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            StudyLabel::PatientName => "patient_name",
            StudyLabel::PatientId => "patient_id",
            StudyLabel::StudyId => "study_id",
            StudyLabel::AccessionNumber => "accession_number",
            StudyLabel::Modality => "modality",
            StudyLabel::StudyDate => "study_date",
        }
    }
}

impl SendCheckOptions {
    /// Checks the `send_check` block: its query's keywords and that it leaves the window's
    /// keys to the check, the destination's PDU length, the window (`lookback` within
    /// [`MAX_LOOKBACK`], `grace` shorter), `max_matches`, and labels listed once.
    pub(crate) fn validate(&self) -> Result<(), ModuleError> {
        check_query(ProberKind::SendCheck, &self.query)?;
        reserved_keys(
            ProberKind::SendCheck,
            &self.query,
            &[
                "QueryRetrieveLevel",
                "StudyDate",
                "StudyTime",
                "StudyInstanceUID",
                "NumberOfStudyRelatedInstances",
                "SpecificCharacterSet",
                "TimezoneOffsetFromUTC",
            ],
            "the check sets it (the window is lookback)",
        )?;
        if let Some(pdu) = self.destination_dicom.max_pdu_length {
            check_pdu("send_check.destination_dicom", pdu)?;
        }
        if self.lookback.0.is_zero() || self.lookback.0 > MAX_LOOKBACK {
            return Err(ModuleError::Lookback {
                max: PromDuration(MAX_LOOKBACK),
            });
        }
        if self.grace >= self.lookback {
            return Err(ModuleError::Grace);
        }
        if self.max_matches == 0 {
            return Err(ModuleError::MaxMatches(ProberKind::SendCheck));
        }
        let mut seen = Vec::with_capacity(self.labels.len());
        for label in &self.labels {
            if seen.contains(label) {
                return Err(ModuleError::DuplicateLabel(label.name()));
            }
            seen.push(*label);
        }
        for (i, keyword) in self.compare_attributes.iter().enumerate() {
            let refuse = |why| ModuleError::CompareAttribute {
                keyword: keyword.clone(),
                why,
            };
            match query::keyword(keyword) {
                Err(_) => return Err(refuse("is not a DICOM keyword")),
                Ok((_, VR::SQ)) => return Err(refuse("is a sequence; name an attribute")),
                Ok((_, vr)) if !is_text(vr) => {
                    return Err(refuse("is not text; only text attributes are compared"))
                }
                Ok(_) if NOT_COMPARED.contains(&keyword.as_str()) => {
                    return Err(refuse(
                        "is how the check finds and counts studies; it is not compared",
                    ))
                }
                Ok(_) if COMPUTED.contains(&keyword.as_str()) => {
                    return Err(refuse(
                        "is computed by each archive from the instances it holds (an incomplete \
                         study differs in it); it is not compared",
                    ))
                }
                Ok(_) if self.compare_attributes[..i].contains(keyword) => {
                    return Err(refuse("is listed twice"))
                }
                Ok(_) => {}
            }
        }
        if self.max_series_detail_studies == 0 {
            return Err(ModuleError::SeriesDetailStudies);
        }
        if self.series_detail && !self.compare_instances {
            return Err(ModuleError::SeriesDetailWithoutCounts);
        }
        Ok(())
    }

    /// Builds the destination's TLS client config, when `destination_dicom` has its own
    /// `tls`; relative paths are read from `base`.
    pub(crate) fn load_tls(&mut self, base: &Path) -> Result<(), ModuleError> {
        checks::load_tls(
            &mut self.destination_dicom.tls,
            base,
            "send_check.destination_dicom",
        )
    }
}

/// Attributes the check reads for itself: never in `compare_attributes`.
const NOT_COMPARED: [&str; 5] = [
    "QueryRetrieveLevel",
    "StudyInstanceUID",
    "NumberOfStudyRelatedInstances",
    "SpecificCharacterSet",
    "TimezoneOffsetFromUTC",
];

/// Attributes an archive computes from the instances it holds: a study held short differs in
/// them, which is incompleteness, not a misfiled study.
const COMPUTED: [&str; 9] = [
    "ModalitiesInStudy",
    "SOPClassesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfPatientRelatedStudies",
    "NumberOfPatientRelatedSeries",
    "NumberOfPatientRelatedInstances",
    "NumberOfSeriesRelatedInstances",
    "BodyPartExamined",
    "Modality",
];

/// Whether values of `vr` are text, which the check can compare.
fn is_text(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS | CS | DA | DS | DT | IS | LO | LT | PN | SH | ST | TM | UC | UI | UR | UT
    )
}

/// The longest lookback: a transfer check over more than a year of studies is a migration,
/// not monitoring.
pub(crate) const MAX_LOOKBACK: Duration = Duration::from_secs(366 * 86_400);

fn default_lookback() -> PromDuration {
    PromDuration(Duration::from_secs(24 * 3600))
}

fn default_grace() -> PromDuration {
    PromDuration(Duration::from_secs(600))
}

fn default_true() -> bool {
    true
}

fn default_max_listed() -> usize {
    100
}

fn default_max_confirmations() -> usize {
    200
}

fn default_series_detail_studies() -> usize {
    10
}
