//! The `find` prober: one C-FIND with the module's information model, level and keys.
//!
//! Echo is not enough: some PACS answer C-ECHO while their database is down. This prober asks a
//! real question and fails unless the answer is complete: a failure status is
//! `status_failure`, an answer the peer cut off (0xFE00) is `too_many_matches`.
//!
//! The module's `find` block ([`FindOptions`]) is read, defaulted and checked here too.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::checks::{check_query, default_max_matches, reserved_keys, ModuleError, ProberKind};
use super::peer::{incomplete_failure, AssociationMetrics};
use super::{local_now, Failure, ProbeContext, Stage};
use crate::dicom::find::{find, Identifier, InformationModel};
use crate::dicom::query::QueryKeys;
use crate::metrics;
use crate::settings::TimeZone;

/// One C-FIND; the number of matches it returned.
pub async fn probe(ctx: &ProbeContext<'_>, options: &FindOptions) -> Result<usize, Failure> {
    let metrics = AssociationMetrics::register(ctx);
    let duration = metrics::PROBE_DICOM_FIND_DURATION_SECONDS.gauge(ctx.registry);
    let matches = metrics::PROBE_DICOM_FIND_MATCHES.gauge(ctx.registry);

    let model = options.model.information_model();
    let mut association = metrics.associate(ctx, &[model.sop_class()]).await?;

    ctx.enter(Stage::Find);
    let identifier = identifier(options);
    let start = Instant::now();
    let answer = find(
        &mut association,
        model,
        &identifier,
        1,
        options.max_matches,
        &mut |_| {},
    )
    .await;
    duration.set(start.elapsed().as_secs_f64());
    let answer = answer.map_err(|e| Failure::from_dicom(&e, Stage::Find))?;
    matches.set(answer.matches as f64);
    metrics.status.set(f64::from(answer.status));
    ctx.log.debug(format!(
        "C-FIND returned {} matches, final status {:#06x}, in {:.3}s",
        answer.matches,
        answer.status,
        start.elapsed().as_secs_f64()
    ));

    ctx.enter(Stage::Release);
    let released = association.release().await;
    if let Some(failure) = incomplete_failure(Stage::Find, &answer) {
        return Err(failure);
    }
    released.map_err(|e| Failure::from_dicom(&e, Stage::Release))?;
    Ok(answer.matches)
}

fn identifier(options: &FindOptions) -> Identifier {
    let level = match (options.model, options.level) {
        (Model::Worklist, _) => None,
        (_, Some(level)) => Some(level),
        (Model::StudyRoot, None) => Some(Level::Study),
        (Model::PatientRoot, None) => Some(Level::Patient),
    };
    let today = local_now(options.timezone).date();
    Identifier::from_keys(level.map(Level::as_str), &options.query, today)
}

/// The `find` prober: one C-FIND.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FindOptions {
    /// `study_root` (default), `patient_root` or `worklist`.
    #[serde(default)]
    pub model: Model,
    /// QueryRetrieveLevel: PATIENT, STUDY, SERIES or IMAGE. Default STUDY for study_root,
    /// PATIENT for patient_root; not sent for worklist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Matching and return keys by DICOM keyword; `today` in a date means the probe's day.
    #[serde(default)]
    pub query: QueryKeys,
    /// How `today` is read; default: the exporter's local zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZone>,
    /// Most matches the probe reads before it fails `too_many_matches` (a bound on the time a
    /// peer can keep it reading; matches are counted, not kept).
    #[serde(default = "default_max_matches")]
    pub max_matches: usize,
}

impl Default for FindOptions {
    fn default() -> Self {
        FindOptions {
            model: Model::default(),
            level: None,
            query: QueryKeys::default(),
            timezone: None,
            max_matches: default_max_matches(),
        }
    }
}

impl FindOptions {
    /// Checks the `find` block: its query's keywords, that it leaves the level to `level`,
    /// that a worklist query has no level, and that `max_matches` bounds something.
    pub(crate) fn validate(&self) -> Result<(), ModuleError> {
        check_query(ProberKind::Find, &self.query)?;
        reserved_keys(
            ProberKind::Find,
            &self.query,
            &["QueryRetrieveLevel"],
            "set by find.level",
        )?;
        if self.model == Model::Worklist && self.level.is_some() {
            return Err(ModuleError::WorklistLevel);
        }
        if self.max_matches == 0 {
            return Err(ModuleError::MaxMatches(ProberKind::Find));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    #[default]
    StudyRoot,
    PatientRoot,
    Worklist,
}

impl Model {
    pub fn information_model(self) -> InformationModel {
        match self {
            Model::StudyRoot => InformationModel::StudyRoot,
            Model::PatientRoot => InformationModel::PatientRoot,
            Model::Worklist => InformationModel::Worklist,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}
