//! The `find` prober: one C-FIND with the module's information model, level and keys.
//!
//! Echo is not enough: some PACS answer C-ECHO while their database is down. This prober asks a
//! real question and fails unless the answer is complete: a failure status is
//! `status_failure`, an answer the peer cut off (0xFE00) is `too_many_matches`.

use tokio::time::Instant;

use super::peer::{incomplete_failure, AssociationMetrics};
use super::{local_now, Failure, ProbeContext, Stage};
use crate::config::{FindOptions, Level, Model};
use crate::dicom::find::{find, Identifier};
use crate::metrics;

pub async fn probe(ctx: &ProbeContext<'_>, options: &FindOptions) -> Result<(), Failure> {
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
    released.map_err(|e| Failure::from_dicom(&e, Stage::Release))
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
