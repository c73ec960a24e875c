//! The `echo` prober: TCP connect, A-ASSOCIATE (Verification), C-ECHO, A-RELEASE.
//!
//! Answers "is this PACS up and does it talk DICOM to us?". Its metrics are a fixed set: a
//! step not reached reports 0 seconds, `probe_dicom_status` reports -1 until a C-ECHO-RSP
//! arrives, and `probe_dicom_peer_info` has empty labels until an A-ASSOCIATE-AC arrives.
//!
//! A C-ECHO answered with a failure status is a failed probe, but the association itself is
//! healthy, so it is released, not aborted: an abort shows up as an error in the PACS' logs.

use tokio::time::Instant;

use super::peer::AssociationMetrics;
use super::{Failure, ProbeContext, Reason, Stage};
use crate::dicom::echo::echo;
use crate::dicom::message::status_is_failure;
use crate::dicom::VERIFICATION;
use crate::metrics;

pub async fn probe(ctx: &ProbeContext<'_>) -> Result<(), Failure> {
    let metrics = AssociationMetrics::register(ctx);
    let echo_duration = metrics::PROBE_DICOM_ECHO_DURATION_SECONDS.gauge(ctx.registry);

    let mut association = metrics.associate(ctx, &[VERIFICATION]).await?;

    ctx.enter(Stage::Echo);
    let start = Instant::now();
    let status = echo(&mut association, 1).await;
    echo_duration.set(start.elapsed().as_secs_f64());
    let status = status.map_err(|e| Failure::from_dicom(&e, Stage::Echo))?;
    metrics.status.set(f64::from(status));
    ctx.log.debug(format!(
        "C-ECHO answered with status {status:#06x} in {:.3}s",
        start.elapsed().as_secs_f64()
    ));

    ctx.enter(Stage::Release);
    let released = association.release().await;
    if status_is_failure(status) {
        return Err(Failure::new(
            Stage::Echo,
            Reason::StatusFailure,
            format!("C-ECHO failed with status {status:#06x}"),
        ));
    }
    released.map_err(|e| Failure::from_dicom(&e, Stage::Release))
}
