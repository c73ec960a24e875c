//! The `send_check` prober: did the recent studies of the source (the probe's target) reach
//! the destination (named by the module), and did they arrive whole?
//!
//! The two sides work at once, each on its own association ([`side`]): the source answers one
//! STUDY-level C-FIND over the lookback window while the destination is associated and, for
//! `date_range` and `auto`, answers the same window ([`destination::survey`]). Then the
//! destination confirms what its window did not show, as its strategy says
//! ([`destination::confirm`], where the rule for "missing" lives), and [`compare`] gives the
//! verdict, which [`report`] turns into metrics. Studies are matched by StudyInstanceUID only.
//!
//! A source answer that is cut off (0xFE00) or failed is never taken as the whole truth: the
//! probe fails instead of reporting a partial list. `probe_success` means the comparison ran;
//! what it found is in the `pacs_*` gauges, present only once found ([`metrics`]). When
//! a side fails, `probe_failure_info` names it (`peer`); the other side is still closed
//! properly, and its `pacs_peer_up` says how it did.
//!
//! Time: StudyDate/StudyTime are the PACS' local time: read with the match's
//! TimezoneOffsetFromUTC when the source sends one, else in the module's `timezone`, else in
//! the exporter's zone (TZ). Without a `timezone` the offset is asked for until the source
//! shows it sends none ([`memory`]: Orthanc reads every study's files to answer it), and the
//! dates asked reach back as far as the westernmost offset in play ([`Window::first_date`]);
//! no date bounds the window ahead, so studies dated in the future are counted however far
//! ahead they are. Studies younger than `grace` are pending; see [`compare`] for untimed
//! studies and studies timed in the future.
//!
//! Beyond presence, opt-in: `compare_attributes` asks both sides for more attributes in the same
//! queries, and a held study whose values differ is mismatched ([`attributes`]);
//! `series_detail` compares the series of incomplete studies on the same associations
//! ([`series`]). The destination is the module's, or, with `destination: from_request`, the
//! request's (held to allowed_targets like the target).
//!
//! The module's `send_check` block, its defaults and its checks are in [`options`].

mod attributes;
mod compare;
mod destination;
mod memory;
mod metrics;
pub(crate) mod options;
mod plan;
mod series;
mod side;

pub use memory::Archives;

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};

use self::attributes::Compared;
use self::compare::{Offsets, State, Study, Window, Zone};
use self::destination::Survey;
use self::memory::ArchiveKey;
use self::metrics::Metrics;
use self::options::{SendCheckOptions, StudyLabel};
use self::side::{Endpoint, Side};
use super::peer::incomplete_failure;
use super::{Failure, Peer, ProbeContext, Reason, Stage};
use crate::dicom::charset::label_value;
use crate::dicom::study::{StudyQuery, StudySelection};

/// Longest value of an opt-in label (patient name, IDs…), in characters.
const MAX_LABEL_CHARS: usize = 128;

/// What a transfer check found: the source studies it checked, and how many of those the
/// destination is missing or has incomplete (`pacs_studies_checked`, `_missing`, `_incomplete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub checked: usize,
    pub missing: usize,
    pub mismatched: usize,
    pub incomplete: usize,
}

pub async fn probe(ctx: &ProbeContext<'_>, options: &SendCheckOptions) -> Result<Counts, Failure> {
    let metrics = Metrics::register(ctx, options);
    let window = Window {
        now: Utc::now(),
        lookback: options.lookback.0,
        grace: options.grace.0,
        zone: Zone::of(options.timezone),
    };
    let compared = Compared::new(&options.compare_attributes, options.compare_ignore_case);
    // A destination named by the request is held to allowed_targets like the target; the
    // web layer refuses a request for such a module that names none.
    let (destination_target, restricted) = match (options.destination.fixed(), ctx.destination) {
        (Some(fixed), _) => (fixed, false),
        (None, Some(requested)) => (requested, true),
        (None, None) => {
            return Err(Failure::new(
                Stage::Resolve,
                Reason::Unreachable,
                "the module takes its destination from the request (destination: from_request), and the request named none",
            )
            .on(Peer::Destination))
        }
    };
    let source = Endpoint {
        peer: Peer::Source,
        target: ctx.target,
        dicom: ctx.module.dicom.clone(),
        restricted: true,
        compare: &compared.keys,
    };
    let destination = Endpoint {
        peer: Peer::Destination,
        target: destination_target,
        dicom: options.destination_dicom.apply(&ctx.module.dicom),
        restricted,
        compare: &compared.keys,
    };

    // With a configured zone the offset is not needed; without one it is asked for until the
    // source shows that it does not send it (Orthanc reads every study's files to answer it),
    // and the dates asked for reach as far west as the offsets in play.
    let source_archive = ArchiveKey::new(ctx.target, &ctx.module.dicom);
    let offsets = match options.timezone {
        Some(_) => Offsets::None,
        None => ctx.archives.offsets(&source_archive),
    };
    let dates = Dates {
        from: window.first_date(offsets),
        today: window.today(),
    };

    let (studies, destination) = tokio::join!(
        query_source(
            ctx,
            source,
            &metrics,
            options,
            dates,
            offsets,
            &source_archive
        ),
        survey_destination(ctx, destination, &metrics, options, dates),
    );
    let (studies, source) = match studies {
        Ok(studies) => studies,
        Err(failure) => {
            // The target failed; the destination did its part so far and is let go cleanly.
            if let Ok((side, _)) = destination {
                side.close(ctx, true).await;
            }
            return Err(failure);
        }
    };
    let (mut destination, survey) = match destination {
        Ok(destination) => destination,
        Err(failure) => {
            if let Some(source) = source {
                source.close(ctx, true).await;
            }
            return Err(failure);
        }
    };

    let sorted = compare::sort_out(studies, &window);
    metrics.checked.set(sorted.checked.len() as f64);
    metrics.pending.set(sorted.pending.len() as f64);
    metrics.future.set(sorted.future as f64);
    ctx.log.info(format!(
        "source: {} studies to check, {} pending, {} outside the window or undated, {} listed twice, {} without a UID",
        sorted.checked.len(),
        sorted.pending.len(),
        sorted.outside,
        sorted.duplicates,
        sorted.without_uid
    ));
    if sorted.future > 0 {
        ctx.log.info(format!(
            "source: {} studies are timed more than {} minutes after now: is the time zone right? \
             (send_check.timezone, or TZ for the exporter)",
            sorted.future,
            compare::FUTURE_TOLERANCE.as_secs() / 60
        ));
    }

    let found = if sorted.checked.is_empty() {
        Ok(survey.found)
    } else {
        destination::confirm(ctx, &mut destination, options, &sorted.checked, survey).await
    };
    let found = match found {
        Ok(found) => found,
        Err(failure) => {
            // Both at once: neither waits on the other's release near the deadline.
            let source = async {
                if let Some(source) = source {
                    source.close(ctx, true).await;
                }
            };
            return tokio::join!(source, destination.close_with(ctx, Err(failure))).1;
        }
    };
    let attributes = (!compared.is_empty()).then(|| compare::Attributes {
        compared: &compared,
        seen: destination.seen(),
    });
    let mut verdict = compare::compare(
        &sorted.checked,
        &found,
        options.compare_instances,
        attributes,
    );
    let detail = match source {
        Some(mut source) => {
            // The incomplete studies first (mismatched ones held short too), then held ones
            // whose counts tell nothing.
            let incomplete: Vec<&Study> = verdict
                .unsent
                .iter()
                .filter(|(_, state)| *state == State::Incomplete)
                .map(|(study, _)| *study)
                .chain(verdict.mismatched_short.iter().copied())
                .chain(verdict.unproven.iter().copied())
                .take(options.max_series_detail_studies)
                .collect();
            let detail = series::detail(ctx, &mut source, &mut destination, &incomplete).await;
            tokio::join!(source.close(ctx, true), destination.close(ctx, true));
            for study in &detail.found_incomplete {
                verdict.incomplete_by_series(study);
            }
            Some(detail)
        }
        None => {
            destination.close(ctx, true).await;
            None
        }
    };
    report(
        ctx,
        options,
        &metrics,
        &compared,
        sorted.checked.len(),
        &verdict,
        window.now,
    );
    if let Some(detail) = detail {
        report_series(ctx, &metrics, &detail);
    }
    Ok(Counts {
        checked: sorted.checked.len(),
        missing: verdict.missing,
        mismatched: verdict.mismatched,
        incomplete: verdict.incomplete,
    })
}

/// Series detail's totals: known when there was no study to look into, or the series of one
/// at least were compared.
fn report_series(ctx: &ProbeContext<'_>, metrics: &Metrics, detail: &series::Detail<'_>) {
    let asked = detail.asked;
    if asked > 0 && detail.compared == 0 {
        ctx.log.info(format!(
            "series detail: the series of none of the {asked} studies looked into could be compared; pacs_series_* are left out"
        ));
        return;
    }
    if let (Some(missing), Some(short)) = (&metrics.series_missing, &metrics.series_incomplete) {
        missing.set(detail.missing as f64);
        short.set(detail.incomplete as f64);
    }
    if asked > 0 {
        ctx.log.info(format!(
            "series detail: compared the series of {} of {asked} studies: {} series missing, {} incomplete",
            detail.compared, detail.missing, detail.incomplete
        ));
    }
}

/// The StudyDates a probe asks both sides for: from `from` on, open-ended (future studies are
/// counted however far ahead they are dated); `today` is for `today` in the module's keys.
#[derive(Clone, Copy, Debug)]
struct Dates {
    from: NaiveDate,
    today: NaiveDate,
}

/// The source's studies in the window: one detailed query, which must be complete. `offsets`
/// are what `archive` (the source) was seen to send. With `series_detail` the source's side
/// is handed back open, for the series of incomplete studies; otherwise it is closed.
async fn query_source<'a, 'p>(
    ctx: &ProbeContext<'_>,
    endpoint: Endpoint<'p>,
    metrics: &'a Metrics,
    options: &SendCheckOptions,
    dates: Dates,
    offsets: Offsets,
    archive: &ArchiveKey,
) -> Result<(Vec<Study>, Option<Side<'a, 'p>>), Failure> {
    let zone = Zone::of(options.timezone);
    let mut side = Side::open(ctx, endpoint, metrics, options.max_matches).await?;
    let ask_offsets = offsets != Offsets::None;
    let query = StudyQuery {
        selection: StudySelection::Dates {
            from: dates.from,
            to: None,
        },
        details: true,
        timezone_offset: ask_offsets,
        extra: Some((&options.query, dates.today)),
        compare: &[],
    };
    let mut studies = Vec::new();
    let mut westernmost: Option<i32> = None;
    let mut absurd_counts = 0;
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let answer = side
        .find(ctx, &query, &mut |m| {
            if let Some(offset) = m.timezone_offset {
                let seconds = offset.local_minus_utc();
                westernmost = Some(westernmost.map_or(seconds, |w| w.min(seconds)));
            }
            unknown.extend(m.unknown_character_sets.iter().cloned());
            absurd_counts += usize::from(m.absurd_count);
            studies.push(Study::keep(m, &options.labels, zone));
        })
        .await
        .and_then(|answer| match incomplete_failure(side.stage(), &answer) {
            Some(why) => Err(side.failure(why)),
            None => Ok(()),
        });
    let side = match answer {
        Ok(()) if options.series_detail => Some(side),
        answer => {
            side.close_with(ctx, answer).await?;
            None
        }
    };
    if ask_offsets && !studies.is_empty() {
        ctx.archives.remember_offsets(archive, westernmost);
        if westernmost.is_none() {
            ctx.log.debug(
                "source: no study carried TimezoneOffsetFromUTC; it is not asked for again for an hour",
            );
        }
    }
    if absurd_counts > 0 {
        ctx.log.info(format!(
            "source: {absurd_counts} studies reported a NumberOfStudyRelatedInstances no archive could hold; their instance counts are unknown"
        ));
    }
    if !unknown.is_empty() {
        ctx.log.info(format!(
            "source: unknown SpecificCharacterSet terms {unknown:?}; their text was read as ASCII"
        ));
    }
    Ok((studies, side))
}

/// The destination's association and, for `date_range` and `auto`, its studies in the window.
async fn survey_destination<'a, 'p>(
    ctx: &ProbeContext<'_>,
    endpoint: Endpoint<'p>,
    metrics: &'a Metrics,
    options: &SendCheckOptions,
    dates: Dates,
) -> Result<(Side<'a, 'p>, Survey), Failure> {
    let mut side = Side::open(ctx, endpoint, metrics, options.max_matches).await?;
    match destination::survey(ctx, &mut side, options.destination_query, dates.from).await {
        Ok(survey) => Ok((side, survey)),
        Err(failure) => side.close_with(ctx, Err(failure)).await,
    }
}

fn report(
    ctx: &ProbeContext<'_>,
    options: &SendCheckOptions,
    metrics: &Metrics,
    compared: &Compared,
    checked: usize,
    verdict: &compare::Verdict<'_>,
    now: DateTime<Utc>,
) {
    metrics.missing.set(verdict.missing as f64);
    if let Some(mismatched) = &metrics.mismatched {
        mismatched.set(verdict.mismatched as f64);
    }
    metrics.incomplete.set(verdict.incomplete as f64);
    metrics
        .instances_missing
        .set(verdict.instances_missing as f64);
    // Mismatched studies arrived (under other values) and have an alert of their own, unless
    // they are also held short.
    let oldest = verdict
        .unsent
        .iter()
        .find(|(study, state)| {
            *state != State::Mismatched
                || verdict
                    .mismatched_short
                    .iter()
                    .any(|s| s.uid() == study.uid())
        })
        .map_or(0.0, |(s, _)| s.age(now));
    metrics.oldest_unsent_age.set(oldest);
    let truncated = verdict.unsent.len() > options.max_listed_studies;
    metrics
        .list_truncated
        .set(if truncated { 1.0 } else { 0.0 });
    for (study, state) in verdict.unsent.iter().take(options.max_listed_studies) {
        // A UID is at most 64 characters of digits and dots; a peer's is still cleaned.
        let uid = label_value(study.uid(), MAX_LABEL_CHARS);
        let mut values = vec![uid, state.as_str().to_string()];
        values.extend((0..options.labels.len()).map(|i| label(study, i)));
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        metrics.unsent.with_label_values(&values).set(1.0);
    }
    ctx.log.info(format!(
        "checked {} studies: {} missing, {}{} incomplete",
        checked,
        verdict.missing,
        if compared.is_empty() {
            String::new()
        } else {
            format!("{} mismatched, ", verdict.mismatched)
        },
        verdict.incomplete
    ));
    for (study, differences) in &verdict.differences {
        let named: Vec<String> = differences
            .iter()
            .map(|d| difference(options, compared, study, d))
            .collect();
        ctx.log.debug(format!(
            "mismatched study {:?}: {}",
            study.uid(),
            named.join("; ")
        ));
    }
    for (study, state) in &verdict.unsent {
        // UIDs only: patient data stays out of the logs unless the module's labels allow it.
        let allowed: Vec<String> = options
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}={:?}", l.name(), label(study, i)))
            .collect();
        ctx.log.debug(format!(
            "{} study {:?} ({} source instances) {}",
            state.as_str(),
            study.uid(),
            study
                .instances
                .map_or("unknown".to_string(), |n| n.to_string()),
            allowed.join(" ")
        ));
    }
}

/// One differing attribute, for the log: its keyword, and both values only where the module's
/// `labels` opt in to that kind of data (patient data stays out of logs otherwise).
fn difference(
    options: &SendCheckOptions,
    compared: &Compared,
    study: &Study,
    difference: &compare::Difference,
) -> String {
    let keyword = compared
        .keywords
        .get(difference.index)
        .map_or("?", String::as_str);
    let shown = StudyLabel::of_keyword(keyword).is_some_and(|l| options.labels.contains(&l));
    if !shown {
        return format!("{keyword} differs");
    }
    let value = |v: Option<&str>| label_value(v.unwrap_or_default(), MAX_LABEL_CHARS);
    format!(
        "{keyword} differs: {:?} at the source, {:?} at the destination",
        value(study.compared(difference.index)),
        value(difference.there.as_deref())
    )
}

/// The value of the module's `index`th opt-in label for `study`, fit for a label (no control
/// characters, capped).
fn label(study: &Study, index: usize) -> String {
    label_value(study.label(index).unwrap_or_default(), MAX_LABEL_CHARS)
}
