//! The destination's side of the check: which of the checked studies it holds, by
//! `destination_query`.
//!
//! `date_range`, `uid_list` and `per_study` are literal: they take a complete answer as the
//! whole truth, so they are right only on archives that behave as they assume (see the
//! README). `auto` runs [`Plan`], the pure rule for calling a study missing: this module only
//! sends the queries it asks for and hands it the answers. What an archive showed is kept
//! between probes in [`super::memory::Archives`], which the probe is handed.

use chrono::NaiveDate;

use super::compare::Study;
use super::memory::ArchiveKey;
use super::options::{DestinationQuery, SendCheckOptions};
pub(super) use super::plan::Survey;
use super::plan::{self, Found, Next, Note, Plan};
use super::side::Side;
use crate::dicom::find::{Completeness, FindAnswer};
use crate::dicom::study::{StudyQuery, StudySelection};
use crate::prober::peer::incomplete_failure;
use crate::prober::{Failure, ProbeContext, Reason, Stage};

/// The first phase: for `date_range` and `auto`, the destination's studies in the window.
pub(super) async fn survey(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    strategy: DestinationQuery,
    from: NaiveDate,
) -> Result<Survey, Failure> {
    if !matches!(
        strategy,
        DestinationQuery::DateRange | DestinationQuery::Auto
    ) {
        return Ok(Survey::default());
    }
    let query = StudyQuery {
        selection: StudySelection::Dates { from, to: None },
        details: false,
        timezone_offset: false,
        extra: None,
        compare: &[],
    };
    let mut found = Found::default();
    let mut matches = 0;
    let answer = side
        .find(ctx, &query, &mut |m| {
            matches += 1;
            found.add(&m.uid, m.instances);
        })
        .await;
    let answer = match (strategy, answer) {
        (_, Ok(answer)) => answer,
        // An archive with more studies in the window than a query may return: `auto` asks
        // for ours by UID instead, on a fresh association (the old one broke off).
        (DestinationQuery::Auto, Err(failure)) if failure.reason == Reason::TooManyMatches => {
            ctx.log.info(format!(
                "{}; confirming the studies it did not list by UID",
                failure.detail
            ));
            side.reconnect(ctx).await?;
            return Ok(Survey {
                found,
                matches,
                completeness: None,
            });
        }
        (_, Err(failure)) => return Err(failure),
    };
    if let Some(why) = incomplete_failure(side.stage(), &answer) {
        if strategy == DestinationQuery::DateRange {
            return Err(side.failure(why));
        }
        ctx.log.info(format!(
            "destination: {}; confirming the studies it did not list by UID",
            why.detail
        ));
    }
    Ok(Survey {
        found,
        matches,
        completeness: Some(answer.completeness()),
    })
}

/// The second phase: completes `survey.found` for the `checked` studies as the strategy
/// says, and returns what the destination holds.
pub(super) async fn confirm(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    options: &SendCheckOptions,
    checked: &[Study],
    survey: Survey,
) -> Result<Found, Failure> {
    let complete = survey.completeness == Some(Completeness::Complete);
    match options.destination_query {
        DestinationQuery::DateRange => Ok(survey.found),
        DestinationQuery::UidList => {
            let mut found = survey.found;
            let uids: Vec<String> = checked.iter().map(|s| s.uid().to_string()).collect();
            for batch in uids.chunks(plan::UID_BATCH) {
                let (answer, matches) = find_uids(ctx, side, batch).await?;
                if let Some(why) = incomplete_failure(side.stage(), &answer) {
                    return Err(side.failure(why));
                }
                merge(&mut found, &matches);
            }
            Ok(found)
        }
        DestinationQuery::PerStudy => {
            let mut found = survey.found;
            for study in checked {
                let uid = [study.uid().to_string()];
                let (answer, matches) = find_uids(ctx, side, &uid).await?;
                if let Some(why) = incomplete_failure(side.stage(), &answer) {
                    return Err(unanswered(side, study.uid(), why));
                }
                merge(&mut found, &matches);
            }
            Ok(found)
        }
        DestinationQuery::Auto => {
            let checked: Vec<(String, Option<u64>)> = checked
                .iter()
                .map(|s| {
                    let count = s.instances.filter(|_| options.compare_instances);
                    (s.uid().to_string(), count)
                })
                .collect();
            let key = side.archive();
            let learnt = ctx.archives.recall(&key);
            if let Some(why) = &learnt.lists_broken {
                ctx.log.info(format!(
                    "destination: its UID list matching was seen not to work ({why}; remembered); confirming study by study"
                ));
            }
            let plan = Plan::new(&checked, survey, &learnt, options.max_confirmations);
            if plan.to_confirm() > 0 {
                ctx.log.info(format!(
                    "destination: {} checked studies not settled by its date-range answer{}; confirming them by UID",
                    plan.to_confirm(),
                    if complete { "" } else { " (the answer was not complete)" }
                ));
            }
            run_plan(ctx, side, plan, options.max_confirmations, &key).await
        }
    }
}

/// Sends the plan's queries until it is done; what it learnt is kept however it ends.
async fn run_plan(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    mut plan: Plan,
    max_confirmations: usize,
    key: &ArchiveKey,
) -> Result<Found, Failure> {
    let outcome = loop {
        let uids = match plan.next() {
            Next::Done => break Ok(()),
            Next::TooMany { needed } => break Err(too_many(&plan, needed, max_confirmations)),
            Next::Ask(uids) => uids,
        };
        let (answer, matches) = match find_uids(ctx, side, &uids).await {
            Ok(answered) => answered,
            Err(failure) => break Err(failure),
        };
        match plan.on_answer(&matches, answer.completeness(), answer.status) {
            Ok(notes) => log_notes(ctx, &notes),
            Err(unanswered_uid) => {
                let why = incomplete_failure(side.stage(), &answer).unwrap_or_else(|| {
                    Failure::new(side.stage(), Reason::StatusFailure, "no answer")
                });
                break Err(unanswered(side, &unanswered_uid.uid, why));
            }
        }
    };
    ctx.archives.remember(key, plan.learnt());
    match outcome {
        Ok(()) => Ok(plan.finish()),
        Err(failure) => Err(side.failure(failure)),
    }
}

fn log_notes(ctx: &ProbeContext<'_>, notes: &[Note]) {
    for note in notes {
        match note {
            Note::ListUnproven { why, broken } => ctx.log.info(format!(
                "destination: {why}; {}",
                if *broken {
                    "its list matching cannot be trusted (remembered), confirming study by study"
                } else {
                    "the studies it did not settle are asked again"
                }
            )),
            Note::Twice(n) => ctx.log.debug(format!(
                "destination: {n} matches repeated a StudyInstanceUID of the same answer; their instance counts were added"
            )),
        }
    }
}

fn too_many(plan: &Plan, needed: usize, max_confirmations: usize) -> Failure {
    Failure::new(
        Stage::FindDestination,
        Reason::TooManyMatches,
        format!(
            "{needed} studies need confirming one by one, more than send_check.max_confirmations ({max_confirmations}): \
             the destination's UID list matching {}; raise max_confirmations, or use destination_query: \
             per_study if the archive only answers single UIDs",
            match plan.lists_off() {
                Some(why) => format!("does not work ({why})"),
                None => "could not be proven (no two studies it is known to hold, or answers too small to rule out a cap)".to_string(),
            }
        ),
    )
}

/// A failure to answer a query for one study: the probe cannot judge it.
fn unanswered(side: &Side<'_, '_>, uid: &str, why: Failure) -> Failure {
    side.failure(Failure {
        detail: format!("a query for study {uid} alone: {}", why.detail),
        ..why
    })
}

/// Merges one answer's tally into what a literal strategy found: a study answered twice
/// keeps the larger sum.
fn merge(found: &mut Found, matches: &plan::Matches) {
    found.merge_larger(&plan::tally(matches));
}

/// One C-FIND for `uids` (one value, or a list); returns the answer and its matches.
async fn find_uids(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    uids: &[String],
) -> Result<(FindAnswer, Vec<(String, Option<u64>)>), Failure> {
    let list: Vec<&str> = uids.iter().map(String::as_str).collect();
    let query = StudyQuery {
        selection: StudySelection::Uids(&list),
        details: false,
        timezone_offset: false,
        extra: None,
        compare: &[],
    };
    let mut matches = Vec::new();
    let answer = side
        .find(ctx, &query, &mut |m| matches.push((m.uid, m.instances)))
        .await?;
    Ok((answer, matches))
}
