//! The destination's side of the check: which of the checked studies it holds, by
//! `destination_query`, and the one rule for calling a study missing.
//!
//! `date_range`, `uid_list` and `per_study` are literal: they take a complete answer as the
//! whole truth, so they are right only on archives that behave as they assume (see the
//! README). `auto` trusts only answers that prove themselves. A study is missing only after
//! 1. a single-value StudyInstanceUID query that completed without it, or
//! 2. a UID-list query that completed without it while returning, in the same answer, the
//!    *witnesses* put in the same list: UIDs the destination is known to hold (seen in this
//!    probe's date-range answer, or in an earlier probe). A peer that answers a list with
//!    nothing, or uses only its first UID, fails that proof.
//!
//! A date-range answer only ever shows what is there: a study stored under another
//! StudyDate, or cut off by a result cap (0xFE00), is not in it and is confirmed by UID.
//! Studies whose list query proves nothing are confirmed one by one, at most
//! `max_confirmations` per probe; past that the probe fails rather than guess. What a
//! destination showed (its list matching does not work; a UID it holds) is remembered
//! between probes, per destination, to save queries: see [`Learnt`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::NaiveDate;
use tokio::time::Instant;

use super::compare::{record, Found};
use super::side::Side;
use crate::config::{DestinationQuery, SendCheckOptions};
use crate::dicom::find::{Completeness, FindAnswer};
use crate::dicom::study::{StudyQuery, StudySelection};
use crate::prober::peer::incomplete_failure;
use crate::prober::{Failure, ProbeContext, Reason, Stage};

/// UIDs per list query, witnesses included: far below the 64 KiB an explicit VR value holds.
pub(super) const UID_BATCH: usize = 200;

/// How long a destination's broken list matching is remembered before it is tried again
/// (an archive may be upgraded or reconfigured).
const FORGET_BROKEN_AFTER: Duration = Duration::from_secs(3600);

/// What the first phase (run beside the source query) learnt: the destination's date-range
/// answer, if the strategy asks for one.
#[derive(Debug, Default)]
pub(super) struct Survey {
    pub found: Found,
    /// Whether the date-range answer was complete.
    pub complete: bool,
}

/// The first phase: for `date_range` and `auto`, the destination's studies in the window.
pub(super) async fn survey(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    strategy: DestinationQuery,
    dates: (NaiveDate, NaiveDate),
) -> Result<Survey, Failure> {
    if !matches!(
        strategy,
        DestinationQuery::DateRange | DestinationQuery::Auto
    ) {
        return Ok(Survey::default());
    }
    let query = StudyQuery {
        selection: StudySelection::Dates {
            from: dates.0,
            to: dates.1,
        },
        details: false,
        timezone_offset: false,
        extra: None,
    };
    let mut found = Found::new();
    let answer = side
        .find(ctx, &query, &mut |m| record(&mut found, m.uid, m.instances))
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
                complete: false,
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
        complete: answer.is_complete(),
    })
}

/// The second phase: completes `survey.found` for the checked studies `uids` as the
/// strategy says, and returns what the destination holds.
pub(super) async fn confirm(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    options: &SendCheckOptions,
    uids: &[&str],
    survey: Survey,
) -> Result<Found, Failure> {
    let mut found = survey.found;
    match options.destination_query {
        DestinationQuery::DateRange => {}
        DestinationQuery::UidList => {
            for batch in uids.chunks(UID_BATCH) {
                let answer = find_uids(ctx, side, batch, &mut found, &[]).await?.0;
                if let Some(why) = incomplete_failure(side.stage(), &answer) {
                    return Err(side.failure(why));
                }
            }
        }
        DestinationQuery::PerStudy => {
            for uid in uids {
                confirm_one(ctx, side, uid, &mut found).await?;
            }
        }
        DestinationQuery::Auto => {
            let unseen: Vec<&str> = uids
                .iter()
                .copied()
                .filter(|u| !found.contains_key(*u))
                .collect();
            if !unseen.is_empty() {
                ctx.log.info(format!(
                    "destination: {} checked studies not in its date-range answer{}; confirming them by UID",
                    unseen.len(),
                    if survey.complete { "" } else { " (the answer was not complete)" }
                ));
                found = Confirmation::new(ctx, side, options, found)
                    .run(unseen)
                    .await?;
            }
        }
    }
    Ok(found)
}

/// `auto`'s confirmation of the studies a date-range answer did not show.
struct Confirmation<'c, 's, 'a, 'p> {
    ctx: &'c ProbeContext<'c>,
    side: &'s mut Side<'a, 'p>,
    found: Found,
    key: String,
    learnt: Learnt,
    /// Whether a list query failed its proof in this probe: the rest go one by one.
    lists_failed: bool,
    /// Whether the witnesses were seen in this probe (remembered ones may since have been
    /// deleted, so a proof that fails with them says nothing about list matching).
    fresh_witnesses: bool,
    one_by_one: usize,
    max_one_by_one: usize,
}

impl<'c, 's, 'a, 'p> Confirmation<'c, 's, 'a, 'p> {
    fn new(
        ctx: &'c ProbeContext<'c>,
        side: &'s mut Side<'a, 'p>,
        options: &SendCheckOptions,
        found: Found,
    ) -> Self {
        let key = options.destination.0.to_string();
        let mut learnt = Learnt::recall(&key);
        if learnt.list_matching_broken {
            ctx.log.info(
                "destination: UID list matching was seen not to work on this destination (remembered); confirming study by study",
            );
        }
        // UIDs this very probe saw are the freshest witnesses.
        let fresh: Vec<String> = found.keys().take(2).cloned().collect();
        let fresh_witnesses = !fresh.is_empty();
        if fresh_witnesses {
            learnt.witnesses = fresh;
        }
        Confirmation {
            ctx,
            side,
            found,
            key,
            learnt,
            lists_failed: false,
            fresh_witnesses,
            one_by_one: 0,
            max_one_by_one: options.max_confirmations,
        }
    }

    async fn run(mut self, unseen: Vec<&str>) -> Result<Found, Failure> {
        let over_cap = self.confirm_all(unseen).await?;
        // What this probe learnt holds whether it confirmed everything or stopped at the cap.
        self.learnt.remember(&self.key);
        match over_cap {
            None => Ok(self.found),
            Some(needed) => Err(self.too_many(needed)),
        }
    }

    /// Confirms `unseen`, by lists while they can be trusted, else one by one up to
    /// max_confirmations. Returns how many would have to go one by one when that is more.
    async fn confirm_all(&mut self, unseen: Vec<&str>) -> Result<Option<usize>, Failure> {
        let mut queue: VecDeque<&str> = unseen.into();
        while !queue.is_empty() {
            let lists = !self.lists_failed
                && !self.learnt.list_matching_broken
                && !self.learnt.witnesses.is_empty();
            if lists {
                let take = queue.len().min(UID_BATCH - self.learnt.witnesses.len());
                let batch: Vec<&str> = queue.drain(..take).collect();
                for uid in self.list_query(&batch).await?.into_iter().rev() {
                    queue.push_front(uid);
                }
                continue;
            }
            if self.one_by_one + queue.len() > self.max_one_by_one
                && (self.learnt.list_matching_broken || self.lists_failed)
            {
                return Ok(Some(self.one_by_one + queue.len()));
            }
            let Some(uid) = queue.pop_front() else { break };
            self.one_by_one += 1;
            if self.one_by_one > self.max_one_by_one {
                return Ok(Some(self.one_by_one + queue.len()));
            }
            if confirm_one(self.ctx, self.side, uid, &mut self.found).await? {
                self.learnt.witnesses = vec![uid.to_string()];
                self.fresh_witnesses = true;
            }
        }
        Ok(None)
    }

    /// One list query of `batch` with the witnesses around it. Returns the studies of the
    /// batch still to confirm: none when the answer proved itself.
    async fn list_query<'u>(&mut self, batch: &[&'u str]) -> Result<Vec<&'u str>, Failure> {
        let witnesses = self.learnt.witnesses.clone();
        let (answer, returned) =
            find_uids(self.ctx, self.side, batch, &mut self.found, &witnesses).await?;
        let proved = answer.is_complete() && returned.iter().all(|w| *w);
        if proved {
            return Ok(Vec::new());
        }
        let why = match answer.completeness() {
            Completeness::Complete => {
                "answered a UID list without the studies it is known to hold".to_string()
            }
            Completeness::CutOff => "cut a UID list answer off (status 0xfe00)".to_string(),
            Completeness::Failed => {
                format!("answered a UID list with status {:#06x}", answer.status)
            }
        };
        self.ctx.log.info(format!(
            "destination: {why}; its list matching cannot be trusted, confirming study by study"
        ));
        // Witnesses only remembered may have been deleted since: drop them and go one by one
        // until this probe sees a study the destination holds. Otherwise lists are done for
        // this probe, and remembered as broken unless a cap (which says nothing about list
        // matching itself) was the cause.
        if self.fresh_witnesses || answer.completeness() == Completeness::Failed {
            self.lists_failed = true;
            if answer.completeness() != Completeness::CutOff {
                self.learnt.list_matching_broken = true;
                self.learnt.since = Some(Instant::now());
            }
        } else {
            self.learnt.witnesses.clear();
        }
        Ok(batch
            .iter()
            .copied()
            .filter(|u| !self.found.contains_key(*u))
            .collect())
    }

    fn too_many(&self, needed: usize) -> Failure {
        self.side.failure(Failure::new(
            Stage::FindDestination,
            Reason::TooManyMatches,
            format!(
                "{needed} studies need confirming one by one, more than send_check.max_confirmations ({}): \
                 the destination's UID list matching {}; raise max_confirmations, or use destination_query: \
                 per_study if the archive only answers single UIDs",
                self.max_one_by_one,
                if self.learnt.list_matching_broken || self.lists_failed {
                    "does not work"
                } else {
                    "could not be proven (no study it is known to hold)"
                }
            ),
        ))
    }
}

/// Queries `uids` (with `witnesses` first and last), recording what comes back in `found`.
/// Returns the answer and, per witness, whether it came back.
async fn find_uids(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    uids: &[&str],
    found: &mut Found,
    witnesses: &[String],
) -> Result<(FindAnswer, Vec<bool>), Failure> {
    let mut list: Vec<&str> = Vec::with_capacity(uids.len() + witnesses.len());
    // One witness goes last (a peer that uses only the first UID then fails the proof); a
    // second goes first (so one that uses only the last fails too).
    if let Some(first) = witnesses.get(1) {
        list.push(first);
    }
    list.extend_from_slice(uids);
    if let Some(last) = witnesses.first() {
        list.push(last);
    }
    let mut returned = vec![false; witnesses.len()];
    let query = StudyQuery {
        selection: StudySelection::Uids(&list),
        details: false,
        timezone_offset: false,
        extra: None,
    };
    let answer = side
        .find(ctx, &query, &mut |m| {
            for (seen, witness) in returned.iter_mut().zip(witnesses) {
                *seen |= m.uid == *witness;
            }
            record(found, m.uid, m.instances);
        })
        .await?;
    Ok((answer, returned))
}

/// A single-value UID query: whether the destination holds `uid`. A complete answer without
/// it proves it missing; one cut off or failed proves nothing and fails the probe.
async fn confirm_one(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    uid: &str,
    found: &mut Found,
) -> Result<bool, Failure> {
    let answer = find_uids(ctx, side, &[uid], found, &[]).await?.0;
    if found.contains_key(uid) {
        return Ok(true);
    }
    match incomplete_failure(side.stage(), &answer) {
        Some(why) => Err(side.failure(Failure {
            detail: format!("a query for study {uid} alone: {}", why.detail),
            ..why
        })),
        None => Ok(false),
    }
}

/// What the probes of this process learnt about a destination, keyed by its
/// `AET@host:port` (an operator's config value, so the table stays small).
#[derive(Clone, Debug, Default)]
struct Learnt {
    /// It answered a UID list without studies it holds, or with a failure status.
    list_matching_broken: bool,
    /// When that was seen.
    since: Option<Instant>,
    /// UIDs it was last seen to hold, to put in list queries as proof.
    witnesses: Vec<String>,
}

fn learnt_table() -> &'static Mutex<HashMap<String, Learnt>> {
    static TABLE: OnceLock<Mutex<HashMap<String, Learnt>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Learnt {
    fn recall(key: &str) -> Learnt {
        let table = learnt_table()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut learnt = table.get(key).cloned().unwrap_or_default();
        if learnt
            .since
            .is_some_and(|since| since.elapsed() > FORGET_BROKEN_AFTER)
        {
            learnt.list_matching_broken = false;
            learnt.since = None;
        }
        learnt
    }

    fn remember(&self, key: &str) {
        let mut table = learnt_table()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table.insert(key.to_string(), self.clone());
    }
}
