//! `auto`'s rule for calling a study missing, pure: which UID query to send next, and what
//! each answer proves. [`super::destination`] runs the queries; nothing here does I/O or reads
//! a clock, so the rule is tested as a property over a model of archives (`tests` below).
//!
//! The invariant: *the verdict is exact, or the probe fails with a reason; a study is never
//! reported missing while the archive holds it; where the archive's answers are honest, no
//! miss goes unreported.*
//!
//! What an answer proves:
//! - A date-range answer proves presence only: a study may be filed under another StudyDate,
//!   and an answer may be capped, flagged (0xFE00) or silently. The studies it does not show,
//!   or shows with fewer instances than the source, are confirmed by UID.
//! - A single-value StudyInstanceUID query that completes proves whether the archive holds that
//!   study, and its instance count (the sum over its matches: one UID may be filed twice).
//! - A UID-list query proves the same for every UID in it only when
//!   1. it completed (no 0xFE00, no failure status);
//!   2. two distinct *witnesses*, studies the archive was seen to hold, put first and last in
//!      the list, both came back: an archive that reads only the first value, only the last,
//!      or the whole list as one value fails this;
//!   3. it held fewer matches than one answer of this archive already held in this probe: a
//!      cap that ends answers silently at K matches has then been shown to be above this
//!      answer's size, so nothing was cut.
//!
//!   Otherwise the studies it did not settle are asked again, in smaller lists or one by one.
//!
//! A transient failure status (out of resources: 0xA7xx, 0xC0xx) is retried once and never
//! teaches anything; any other failure status on a list, or a list answered without a fresh
//! witness, marks the archive's list matching broken ([`Learnt`]). Studies confirmed one by one
//! are bounded by `max_confirmations`; past it the probe fails rather than guess.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;

use crate::dicom::find::Completeness;

/// UIDs per list query, witnesses included: far below the 64 KiB an explicit VR value holds.
pub(super) const UID_BATCH: usize = 200;

/// How often lists that proved nothing (cut, or possibly cut) are tried again, smaller, in
/// one probe before the rest go one by one.
const LIST_RETRIES: usize = 3;

/// One answer's matches: StudyInstanceUID and NumberOfStudyRelatedInstances, as read.
pub(super) type Matches = [(String, Option<u64>)];

/// UIDs a [`Found`] keeps as text, first come: witness candidates.
const SAMPLE: usize = 8;

/// What is known of the studies an archive holds: instance count (where known) by
/// StudyInstanceUID.
///
/// A probe may hold `max_matches` of these per side, so a UID is kept as a 128-bit keyed hash
/// rather than as text (24 bytes an entry instead of about 100): two UIDs of one probe share
/// a key with a probability of about n²/2¹²⁹ (10⁻²⁷ for a million studies), which would mix
/// up their verdicts, and the keys are drawn anew in every process, so a peer cannot choose
/// UIDs that collide. The first [`SAMPLE`] UIDs are kept as text too, as witnesses.
#[derive(Clone, Debug, Default)]
pub(super) struct Found {
    counts: HashMap<u128, Option<u64>>,
    sample: Vec<String>,
}

/// The keys of the hashes [`Found`] keeps UIDs as, drawn once per process.
pub(super) fn uid_key(uid: &str) -> u128 {
    static KEYS: std::sync::OnceLock<(RandomState, RandomState)> = std::sync::OnceLock::new();
    let (high, low) = KEYS.get_or_init(|| (RandomState::new(), RandomState::new()));
    (u128::from(high.hash_one(uid)) << 64) | u128::from(low.hash_one(uid))
}

impl Found {
    pub fn with_capacity(capacity: usize) -> Found {
        Found {
            counts: HashMap::with_capacity(capacity),
            sample: Vec::new(),
        }
    }

    /// Whether `uid` is held, and its count: `None` when not held.
    pub fn get(&self, uid: &str) -> Option<Option<u64>> {
        self.counts.get(&uid_key(uid)).copied()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.counts.contains_key(&uid_key(uid))
    }

    /// How many studies it holds.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Up to [`SAMPLE`] of its UIDs, as first recorded.
    pub fn sample(&self) -> &[String] {
        &self.sample
    }

    /// Records `uid` with `count`, replacing what was known of it.
    pub fn insert(&mut self, uid: &str, count: Option<u64>) {
        if self.counts.insert(uid_key(uid), count).is_none() && self.sample.len() < SAMPLE {
            self.sample.push(uid.to_string());
        }
    }

    pub fn remove(&mut self, uid: &str) {
        self.counts.remove(&uid_key(uid));
        self.sample.retain(|u| u != uid);
    }

    /// Adds one match of an answer (see [`tally`]).
    pub fn add(&mut self, uid: &str, count: Option<u64>) {
        match self.counts.get_mut(&uid_key(uid)) {
            Some(sum) => *sum = sum.zip(count).map(|(a, b)| a.saturating_add(b)),
            None => self.insert(uid, count),
        }
    }

    /// Takes in another answer's tally: a study known from both keeps the larger count.
    pub fn merge_larger(&mut self, other: &Found) {
        for (key, count) in &other.counts {
            let known = self.counts.entry(*key).or_insert(*count);
            *known = (*known).max(*count);
        }
        for uid in &other.sample {
            if self.sample.len() < SAMPLE && !self.sample.contains(uid) {
                self.sample.push(uid.clone());
            }
        }
    }
}

impl FromIterator<(String, Option<u64>)> for Found {
    fn from_iter<I: IntoIterator<Item = (String, Option<u64>)>>(iter: I) -> Found {
        let mut found = Found::default();
        for (uid, count) in iter {
            found.insert(&uid, count);
        }
        found
    }
}

/// One answer's matches summed per UID: a study filed twice (under two patients) counts
/// all its instances; a count missing from any of its matches makes the sum unknown.
pub(super) fn tally(matches: &Matches) -> Found {
    let mut tally = Found::with_capacity(matches.len());
    for (uid, count) in matches {
        tally.add(uid, *count);
    }
    tally
}

/// Whether a failure status says the archive was busy rather than unwilling: out of
/// resources (0xA7xx; 0xC0xx, which some archives use for the same).
pub(super) fn transient(status: u16) -> bool {
    matches!(status >> 8, 0xA7 | 0xC0)
}

/// What earlier probes of the same archive showed, handed in and handed back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Learnt {
    /// Its UID list matching was seen not to work: why. Handed in, what earlier probes saw;
    /// handed back, only what this probe saw (a probe that took it on trust says nothing).
    pub lists_broken: Option<String>,
    /// A UID list proved itself in this probe (handed back only).
    pub lists_proven: bool,
    /// UIDs it was last seen to hold, to put in lists as witnesses (proof is re-checked in
    /// every answer: a remembered one may have been deleted since).
    pub witnesses: Vec<String>,
}

/// What the archive's date-range answer showed.
#[derive(Debug, Default)]
pub(super) struct Survey {
    /// Its matches, tallied.
    pub found: Found,
    /// How many matches it held.
    pub matches: usize,
    /// How it ended; `None` when none was asked, or it was broken off.
    pub completeness: Option<Completeness>,
}

/// The next step of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Send a C-FIND for these StudyInstanceUIDs (one, or a list with witnesses at both ends).
    Ask(Vec<String>),
    /// Every study to confirm is settled: see [`Plan::finish`].
    Done,
    /// More studies would have to go one by one than `max_confirmations` allows.
    TooMany { needed: usize },
}

/// Why a probe cannot conclude from a single-UID answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unanswered {
    pub uid: String,
}

/// A note for the probe's log: what an answer showed about the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Note {
    /// A list proved nothing; the reason, and whether it was remembered.
    ListUnproven { why: String, broken: bool },
    /// Matches of one answer that repeated a UID already matched in it (a study filed under
    /// two patients, or an archive that answers once per instance); their counts were added.
    Twice(usize),
}

#[derive(Clone, Debug)]
enum Asked {
    One(String),
    List {
        batch: Vec<String>,
        first: String,
        last: String,
    },
}

#[derive(Clone, Debug)]
struct Witness {
    uid: String,
    /// Seen held in this probe (a remembered one may have been deleted since).
    fresh: bool,
}

/// `auto`'s confirmation of the studies a date-range answer did not settle.
#[derive(Debug)]
pub(super) struct Plan {
    /// Studies still to confirm.
    queue: VecDeque<String>,
    /// The source's instance count of each study to confirm, when counts are compared.
    source: Found,
    /// What the archive is known to hold: lower bounds from presence, replaced by the sums of
    /// answers that proved themselves.
    found: Found,
    witnesses: Vec<Witness>,
    /// The most matches one answer of this probe held.
    largest_answer: usize,
    /// Whether an answer of this probe ended with 0xFE00: the archive flags its caps, so an
    /// answer that completed was not cut.
    flags_caps: bool,
    /// Lists are not used for the rest of this probe (why, and whether it is remembered).
    lists_off: Option<(String, bool)>,
    /// Whether `lists_off` was only recalled, not seen in this probe.
    lists_off_recalled: bool,
    /// Whether a UID list proved itself in this probe.
    lists_proven: bool,
    list_retries: usize,
    /// UIDs whose single query already had its transient failure retried.
    retried: HashSet<String>,
    transient_list_retried: bool,
    one_by_one: usize,
    max_one_by_one: usize,
    asked: Option<Asked>,
}

impl Plan {
    /// A plan for the checked studies the survey did not settle.
    ///
    /// `checked` are the source's studies (UID, count when compared); `survey` what the
    /// archive's date-range answer showed; `learnt` what earlier probes showed.
    pub fn new(
        checked: &[(String, Option<u64>)],
        survey: Survey,
        learnt: &Learnt,
        max_one_by_one: usize,
    ) -> Plan {
        let Survey {
            found: survey,
            matches: survey_matches,
            completeness,
        } = survey;
        let source: Found = checked
            .iter()
            .filter(|(uid, count)| !settled(&survey, uid, *count))
            .cloned()
            .collect();
        let queue = checked
            .iter()
            .filter(|(uid, _)| source.contains(uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        // Witnesses are settled studies, never ones still to confirm, and only UIDs that
        // a list can carry as one value.
        let mut witnesses: Vec<Witness> = survey
            .sample()
            .iter()
            .filter(|uid| !source.contains(uid) && is_uid(uid))
            .take(2)
            .map(|uid| Witness {
                uid: uid.clone(),
                fresh: true,
            })
            .collect();
        for uid in &learnt.witnesses {
            let free =
                !source.contains(uid) && is_uid(uid) && witnesses.iter().all(|w| w.uid != *uid);
            if witnesses.len() < 2 && free {
                witnesses.push(Witness {
                    uid: uid.clone(),
                    fresh: false,
                });
            }
        }
        Plan {
            queue,
            source,
            found: survey,
            witnesses,
            largest_answer: survey_matches,
            flags_caps: completeness == Some(Completeness::CutOff),
            lists_off: learnt.lists_broken.clone().map(|why| (why, true)),
            lists_off_recalled: learnt.lists_broken.is_some(),
            lists_proven: false,
            list_retries: 0,
            retried: HashSet::new(),
            transient_list_retried: false,
            one_by_one: 0,
            max_one_by_one,
            asked: None,
        }
    }

    /// How many studies the survey left to confirm.
    pub fn to_confirm(&self) -> usize {
        self.queue.len()
    }

    /// The next query, or the end.
    pub fn next(&mut self) -> Next {
        if self.queue.is_empty() {
            return Next::Done;
        }
        if let Some(room) = self.list_room() {
            let take = self.queue.len().min(room);
            let batch: Vec<String> = self.queue.drain(..take).collect();
            let (last, first) = (self.witnesses[0].uid.clone(), self.witnesses[1].uid.clone());
            let mut list = Vec::with_capacity(batch.len() + 2);
            list.push(first.clone());
            list.extend(batch.iter().cloned());
            list.push(last.clone());
            self.asked = Some(Asked::List { batch, first, last });
            return Next::Ask(list);
        }
        let needed = self.one_by_one + self.queue.len();
        if needed > self.max_one_by_one && (self.lists_off.is_some() || !self.lists_may_come()) {
            return Next::TooMany { needed };
        }
        if self.one_by_one >= self.max_one_by_one {
            return Next::TooMany { needed };
        }
        let Some(uid) = self.queue.front().cloned() else {
            return Next::Done;
        };
        self.one_by_one += 1;
        self.asked = Some(Asked::One(uid.clone()));
        Next::Ask(vec![uid])
    }

    /// How many studies the next list may hold, if a list can prove anything now.
    fn list_room(&self) -> Option<usize> {
        if self.lists_off.is_some() || self.witnesses.len() < 2 || self.queue.len() < 2 {
            return None;
        }
        if self.flags_caps || self.list_retries == 0 {
            // A list whose studies are mostly missing comes back small enough to prove
            // itself; one that may have been cut is asked again in lists sized below.
            return Some(UID_BATCH - 2);
        }
        // Every study and both witnesses matched once stay below the largest answer.
        let room = self.largest_answer.saturating_sub(3).min(UID_BATCH - 2);
        (room >= 2).then_some(room)
    }

    /// Whether lists could become usable later in this probe (witnesses found one by one).
    fn lists_may_come(&self) -> bool {
        self.lists_off.is_none() && (self.flags_caps || self.largest_answer >= 5)
    }

    /// What the answer to the last query proves. `Err` when a single-UID query could not be
    /// answered: the probe cannot judge that study and fails.
    pub fn on_answer(
        &mut self,
        matches: &Matches,
        completeness: Completeness,
        status: u16,
    ) -> Result<Vec<Note>, Unanswered> {
        let Some(asked) = self.asked.take() else {
            return Ok(Vec::new());
        };
        // An archive that matches studies it was not asked for ignores the UID key: its
        // answer proves nothing of the ones it was asked for.
        let unasked = {
            let list: HashSet<&str> = match &asked {
                Asked::One(uid) => [uid.as_str()].into(),
                Asked::List { batch, first, last } => batch
                    .iter()
                    .map(String::as_str)
                    .chain([first.as_str(), last.as_str()])
                    .collect(),
            };
            matches.iter().any(|(uid, _)| !list.contains(uid.as_str()))
        };
        let answer = tally(matches);
        let mut notes = Vec::new();
        let twice = matches.len() - answer.len();
        if twice > 0 {
            notes.push(Note::Twice(twice));
        }
        let largest_before = self.largest_answer;
        self.largest_answer = self.largest_answer.max(matches.len());
        self.flags_caps |= completeness == Completeness::CutOff;
        match asked {
            Asked::One(uid) => {
                let source = self.source.get(&uid).flatten();
                let shown = answer.get(&uid);
                if unasked {
                    return Err(Unanswered { uid });
                }
                if completeness == Completeness::Complete {
                    self.queue.pop_front();
                    self.settle(&uid, shown);
                } else if settled(&answer, &uid, source) {
                    // Cut off or failed after showing the study: it is held, and what it
                    // showed of its instances is enough.
                    self.queue.pop_front();
                    self.settle(&uid, shown);
                } else if completeness == Completeness::Failed
                    && transient(status)
                    && self.retried.insert(uid.clone())
                {
                    // Asked again as it stands at the front of the queue.
                } else {
                    return Err(Unanswered { uid });
                }
            }
            Asked::List { batch, first, last } => {
                let proof = if unasked {
                    Err(Some(self.lists_off_now(
                        "answered a UID list with studies it was not asked for".into(),
                        true,
                    )))
                } else {
                    self.judge_list(matches.len(), largest_before, completeness, status)
                };
                let proof = proof.and_then(|()| {
                    let shown = |w: &str| answer.contains(w);
                    if shown(&first) && shown(&last) {
                        Ok(())
                    } else {
                        Err(self.witness_missing(&answer))
                    }
                });
                match proof {
                    Ok(()) => {
                        self.lists_proven = true;
                        for uid in &batch {
                            self.settle(uid, answer.get(uid));
                        }
                    }
                    Err(why) => {
                        if let Some(note) = why {
                            notes.push(note);
                        }
                        self.requeue(batch, &answer);
                    }
                }
                for w in &mut self.witnesses {
                    w.fresh |= answer.contains(&w.uid);
                }
            }
        }
        Ok(notes)
    }

    /// Whether a list answer can have been cut or failed; `Err` carries the note to log.
    fn judge_list(
        &mut self,
        matches: usize,
        largest_before: usize,
        completeness: Completeness,
        status: u16,
    ) -> Result<(), Option<Note>> {
        match completeness {
            Completeness::Failed => Err(self.list_failed(status)),
            Completeness::CutOff => Err(self.retry_lists("cut a UID list answer off (0xfe00)")),
            Completeness::Complete if !self.flags_caps && matches >= largest_before => Err(self.retry_lists(
                "answered a UID list with as many matches as its largest answer (it may have been cut)",
            )),
            Completeness::Complete => Ok(()),
        }
    }

    /// A list answered with a failure status: busy (retried once, then lists are off for
    /// this probe only), or unwilling (remembered).
    fn list_failed(&mut self, status: u16) -> Option<Note> {
        let busy = transient(status);
        if busy && !self.transient_list_retried {
            self.transient_list_retried = true;
            return Some(Note::ListUnproven {
                why: format!("answered a UID list with status {status:#06x} (out of resources); asking again"),
                broken: false,
            });
        }
        let why = format!("answered a UID list with status {status:#06x}");
        Some(self.lists_off_now(why, !busy))
    }

    fn retry_lists(&mut self, why: &str) -> Option<Note> {
        self.list_retries += 1;
        if self.list_retries > LIST_RETRIES {
            return Some(self.lists_off_now(why.to_string(), false));
        }
        Some(Note::ListUnproven {
            why: why.to_string(),
            broken: false,
        })
    }

    fn witness_missing(&mut self, answer: &Found) -> Option<Note> {
        let stale: Vec<String> = self
            .witnesses
            .iter()
            .filter(|w| !w.fresh && !answer.contains(&w.uid))
            .map(|w| w.uid.clone())
            .collect();
        if !stale.is_empty() {
            // A remembered witness may have been deleted: it says nothing about lists.
            self.witnesses.retain(|w| !stale.contains(&w.uid));
            return Some(Note::ListUnproven {
                why: "did not return a remembered study; it is forgotten".into(),
                broken: false,
            });
        }
        Some(self.lists_off_now(
            "answered a UID list without the studies it is known to hold".into(),
            true,
        ))
    }

    fn lists_off_now(&mut self, why: String, broken: bool) -> Note {
        self.lists_off = Some((why.clone(), broken));
        self.lists_off_recalled = false;
        Note::ListUnproven { why, broken }
    }

    /// Puts back the studies of an unproven list that its answer did not settle.
    fn requeue(&mut self, batch: Vec<String>, answer: &Found) {
        for uid in batch.into_iter().rev() {
            if let Some(count) = answer.get(&uid) {
                // Shown: held. A count from an unproven answer is only a lower bound.
                let known = self.found.get(&uid).map_or(count, |known| known.max(count));
                self.found.insert(&uid, known);
            }
            let source = self.source.get(&uid).flatten();
            if !settled(&self.found, &uid, source) {
                self.queue.push_front(uid);
            }
        }
    }

    /// Records what a proven answer says of `uid`: held with a count, or not held (a study
    /// not in `found` is missing).
    fn settle(&mut self, uid: &str, count: Option<Option<u64>>) {
        match count {
            Some(count) => {
                self.found.insert(uid, count);
                if is_uid(uid) && self.witnesses.iter().all(|w| w.uid != uid) {
                    self.witnesses.insert(
                        0,
                        Witness {
                            uid: uid.to_string(),
                            fresh: true,
                        },
                    );
                    self.witnesses.truncate(2);
                }
            }
            None => self.found.remove(uid),
        }
    }

    /// What the archive holds of the checked studies (see [`Plan::learnt`] for what this
    /// probe learnt).
    pub fn finish(self) -> Found {
        self.found
    }

    /// Why lists are not used (any more) in this probe, if they are not.
    pub fn lists_off(&self) -> Option<&str> {
        self.lists_off.as_ref().map(|(why, _)| why.as_str())
    }

    /// What this probe learnt, to hand to the next.
    pub fn learnt(&self) -> Learnt {
        Learnt {
            lists_broken: self
                .lists_off
                .as_ref()
                .filter(|(_, broken)| *broken && !self.lists_off_recalled)
                .map(|(why, _)| why.clone()),
            lists_proven: self.lists_proven,
            witnesses: self.witnesses.iter().map(|w| w.uid.clone()).collect(),
        }
    }
}

/// Whether `uid` is a UID: 1 to 64 digits and dots (what may stand as one value of a list).
fn is_uid(uid: &str) -> bool {
    (1..=64).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Whether what an archive showed of a study settles it: shown, with at least the source's
/// count or a count one side does not know.
fn settled(found: &Found, uid: &str, source: Option<u64>) -> bool {
    match (found.get(uid), source) {
        (None, _) => false,
        (Some(Some(there)), Some(here)) => there >= here,
        (Some(_), _) => true,
    }
}

#[cfg(test)]
mod tests {
    //! The invariant, as a property over a model of archives: each archive's behaviour is
    //! drawn from independent dimensions (which records a date-range query finds, how it
    //! matches UID lists, its cap, its answer order, its counts, UIDs filed twice), the
    //! studies and the truth are drawn too, and a probe is run against it twice, the second
    //! time with what the first learnt, after some studies were deleted.

    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;

    /// How an archive matches a StudyInstanceUID list (several values).
    #[derive(Clone, Copy, Debug)]
    enum ListMatching {
        All,
        FirstOnly,
        LastOnly,
        /// Reads the whole list as one UID: matches nothing.
        WholeValue,
        /// Fails every list with 0xC320 (pynetdicom's qrscp).
        Refused,
        /// Fails the first list with this transient status, then matches all values.
        FailsOnce(u16),
        /// Ignores StudyInstanceUID altogether, lists and single values: answers every
        /// study it holds (up to its cap).
        IgnoresUids,
    }

    #[derive(Clone, Copy, Debug)]
    enum Cap {
        None,
        /// Ends an answer with 0xFE00 after K matches.
        Flagged(usize),
        /// Ends an answer with success after K matches.
        Silent(usize),
    }

    #[derive(Clone, Copy, Debug)]
    enum Order {
        Storage,
        List,
        /// Storage order, rotated.
        Rotated(usize),
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Counts {
        Present,
        Absent,
        /// One match per instance, without a count (pynetdicom's qrscp).
        PerInstance,
    }

    /// One record the archive holds: a study may have two (filed under two patients).
    #[derive(Clone, Debug)]
    struct Record {
        uid: String,
        instances: u64,
        /// Whether a date-range query over the window finds it: its StudyDate is in the
        /// window, and the archive matches dates (a record filed under another date, or an
        /// archive that matches dates literally, is not found).
        in_date_answer: bool,
    }

    #[derive(Clone, Debug)]
    struct Archive {
        records: Vec<Record>,
        lists: ListMatching,
        cap: Cap,
        order: Order,
        counts: Counts,
        lists_failed: std::cell::Cell<bool>,
    }

    impl Archive {
        fn total(&self, uid: &str) -> Option<u64> {
            let mut found = self.records.iter().filter(|r| r.uid == uid).peekable();
            found.peek()?;
            Some(found.map(|r| r.instances).sum())
        }

        /// The answer to a query: its matches and final status.
        fn answer(&self, uids: Option<&[String]>) -> (Vec<(String, Option<u64>)>, u16) {
            let mut status = 0;
            let mut chosen: Vec<&Record> = match uids {
                None => self.records.iter().filter(|r| r.in_date_answer).collect(),
                Some(_) if matches!(self.lists, ListMatching::IgnoresUids) => {
                    self.records.iter().collect()
                }
                Some([uid]) => self.records.iter().filter(|r| r.uid == *uid).collect(),
                Some(list) => {
                    let wanted: Vec<&String> = match self.lists {
                        ListMatching::All => list.iter().collect(),
                        ListMatching::FirstOnly => list.first().into_iter().collect(),
                        ListMatching::LastOnly => list.last().into_iter().collect(),
                        ListMatching::WholeValue | ListMatching::IgnoresUids => Vec::new(),
                        ListMatching::Refused => return (Vec::new(), 0xC320),
                        ListMatching::FailsOnce(failure) => {
                            if !self.lists_failed.replace(true) {
                                return (Vec::new(), failure);
                            }
                            list.iter().collect()
                        }
                    };
                    self.records
                        .iter()
                        .filter(|r| wanted.contains(&&r.uid))
                        .collect()
                }
            };
            match (self.order, uids) {
                (Order::List, Some(list)) => {
                    chosen.sort_by_key(|r| list.iter().position(|u| *u == r.uid))
                }
                (Order::Rotated(by), _) if !chosen.is_empty() => {
                    let by = by % chosen.len();
                    chosen.rotate_left(by);
                }
                _ => {}
            }
            let mut matches: Vec<(String, Option<u64>)> = Vec::new();
            for record in chosen {
                match self.counts {
                    Counts::Present => matches.push((record.uid.clone(), Some(record.instances))),
                    Counts::Absent => matches.push((record.uid.clone(), None)),
                    Counts::PerInstance => {
                        for _ in 0..record.instances {
                            matches.push((record.uid.clone(), None));
                        }
                    }
                }
            }
            match self.cap {
                Cap::Flagged(k) if matches.len() > k => {
                    matches.truncate(k);
                    status = 0xFE00;
                }
                Cap::Silent(k) => matches.truncate(k),
                _ => {}
            }
            (matches, status)
        }
    }

    fn completeness(status: u16) -> Completeness {
        match status {
            0 => Completeness::Complete,
            0xFE00 => Completeness::CutOff,
            _ => Completeness::Failed,
        }
    }

    #[derive(Debug, PartialEq)]
    enum Outcome {
        /// Missing and incomplete studies.
        Verdict(BTreeSet<String>, BTreeSet<String>),
        TooMany,
        Unanswered,
    }

    /// One probe of `archive` for the `checked` studies (UID, source count), as `auto` runs.
    fn probe(
        archive: &Archive,
        checked: &[(String, Option<u64>)],
        learnt: &Learnt,
        max_one_by_one: usize,
    ) -> (Outcome, Learnt) {
        let (matches, status) = archive.answer(None);
        let survey = Survey {
            found: tally(&matches),
            matches: matches.len(),
            completeness: Some(completeness(status)),
        };
        let mut plan = Plan::new(checked, survey, learnt, max_one_by_one);
        let mut queries = 0;
        loop {
            queries += 1;
            assert!(queries < 10_000, "the plan does not end");
            match plan.next() {
                Next::Done => break,
                Next::TooMany { .. } => return (Outcome::TooMany, plan.learnt()),
                Next::Ask(uids) => {
                    if uids.len() > 1 {
                        let distinct: BTreeSet<&String> = uids.iter().collect();
                        assert_eq!(distinct.len(), uids.len(), "a list repeats a UID");
                        assert!(uids.len() <= UID_BATCH);
                    }
                    let (matches, status) = archive.answer(Some(&uids));
                    if plan
                        .on_answer(&matches, completeness(status), status)
                        .is_err()
                    {
                        return (Outcome::Unanswered, plan.learnt());
                    }
                }
            }
        }
        let learnt = plan.learnt();
        let found = plan.finish();
        let mut missing = BTreeSet::new();
        let mut incomplete = BTreeSet::new();
        for (uid, source) in checked {
            match found.get(uid) {
                None => {
                    missing.insert(uid.clone());
                }
                Some(Some(there)) if source.is_some_and(|here| there < here) => {
                    incomplete.insert(uid.clone());
                }
                Some(_) => {}
            }
        }
        (Outcome::Verdict(missing, incomplete), learnt)
    }

    /// The truth: what the archive lacks, and holds short where it reports counts.
    fn truth(archive: &Archive, checked: &[(String, Option<u64>)]) -> Outcome {
        let mut missing = BTreeSet::new();
        let mut incomplete = BTreeSet::new();
        for (uid, source) in checked {
            match archive.total(uid) {
                None => {
                    missing.insert(uid.clone());
                }
                Some(total) => {
                    let reported = archive.counts == Counts::Present;
                    if reported && source.is_some_and(|here| total < here) {
                        incomplete.insert(uid.clone());
                    }
                }
            }
        }
        Outcome::Verdict(missing, incomplete)
    }

    fn list_matching() -> impl Strategy<Value = ListMatching> {
        prop_oneof![
            3 => Just(ListMatching::All),
            1 => Just(ListMatching::FirstOnly),
            1 => Just(ListMatching::LastOnly),
            1 => Just(ListMatching::WholeValue),
            1 => Just(ListMatching::Refused),
            1 => prop_oneof![Just(0xA700u16), Just(0xC001u16)].prop_map(ListMatching::FailsOnce),
            1 => Just(ListMatching::IgnoresUids),
        ]
    }

    fn cap() -> impl Strategy<Value = Cap> {
        // Caps below two matches would cut a single-UID answer of a study filed twice.
        prop_oneof![
            2 => Just(Cap::None),
            1 => (2usize..40).prop_map(Cap::Flagged),
            2 => (2usize..40).prop_map(Cap::Silent),
        ]
    }

    fn order() -> impl Strategy<Value = Order> {
        prop_oneof![
            Just(Order::Storage),
            Just(Order::List),
            (0usize..50).prop_map(Order::Rotated),
        ]
    }

    fn counts() -> impl Strategy<Value = Counts> {
        prop_oneof![
            3 => Just(Counts::Present),
            1 => Just(Counts::Absent),
            1 => Just(Counts::PerInstance),
        ]
    }

    /// One study of the source: whether the archive holds it, in how many records (with
    /// their counts and whether a date-range query finds each), and the source's count
    /// relative to the archive's total.
    #[derive(Clone, Debug)]
    struct Drawn {
        held: bool,
        records: Vec<(u64, bool)>,
        extra: Option<u64>,
    }

    fn drawn() -> impl Strategy<Value = Drawn> {
        (
            prop::bool::weighted(0.7),
            prop::collection::vec((1u64..4, prop::bool::weighted(0.7)), 1..=2),
            prop_oneof![3 => Just(Some(0u64)), 1 => (1u64..3).prop_map(Some), 1 => Just(None)],
        )
            .prop_map(|(held, records, extra)| Drawn {
                held,
                records,
                extra,
            })
    }

    /// Builds the archive's records (storage order: `shuffle` rotates them, and other
    /// studies it holds are mixed in) and the checked studies.
    fn build(
        drawn: &[Drawn],
        others: usize,
        shuffle: usize,
        compare_instances: bool,
    ) -> (Vec<Record>, Vec<(String, Option<u64>)>) {
        let mut records = Vec::new();
        let mut checked = Vec::new();
        for (i, study) in drawn.iter().enumerate() {
            let uid = format!("1.2.{i}");
            let total: u64 = study.records.iter().map(|(n, _)| n).sum();
            if study.held {
                for (instances, in_date_answer) in &study.records {
                    records.push(Record {
                        uid: uid.clone(),
                        instances: *instances,
                        in_date_answer: *in_date_answer,
                    });
                }
            }
            let source = study.extra.map(|extra| total + extra);
            checked.push((uid, source.filter(|_| compare_instances)));
        }
        for i in 0..others {
            records.push(Record {
                uid: format!("1.3.{i}"),
                instances: 1,
                in_date_answer: i % 3 != 0,
            });
        }
        if !records.is_empty() {
            let by = shuffle % records.len();
            records.rotate_left(by);
        }
        (records, checked)
    }

    fn config() -> Config {
        Config {
            cases: 4000,
            rng_seed: RngSeed::Fixed(0x5041_4353),
            ..Config::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// The verdict is exact, or the probe fails with a reason; with room to confirm
        /// every study one by one it never fails. Then the same, a second time, with what the
        /// first probe learnt and some of the archive's studies deleted meanwhile.
        #[test]
        fn the_verdict_is_exact_or_the_probe_fails(
            drawn in prop::collection::vec(drawn(), 1..40),
            others in 0usize..12,
            shuffle in 0usize..100,
            lists in list_matching(),
            cap in cap(),
            order in order(),
            counts in counts(),
            compare_instances in any::<bool>(),
            roomy in any::<bool>(),
            deleted in prop::collection::vec(any::<bool>(), 0..60),
        ) {
            let (records, checked) = build(&drawn, others, shuffle, compare_instances);
            let max_one_by_one = if roomy { 10_000 } else { 5 };
            let mut archive = Archive {
                records,
                lists,
                cap,
                order,
                counts,
                lists_failed: std::cell::Cell::new(false),
            };
            let mut learnt = Learnt::default();
            for round in 0..2 {
                let (outcome, now_learnt) = probe(&archive, &checked, &learnt, max_one_by_one);
                match &outcome {
                    Outcome::Verdict(..) => {
                        prop_assert_eq!(&outcome, &truth(&archive, &checked), "round {}", round)
                    }
                    Outcome::TooMany => prop_assert!(!roomy, "round {}: failed with room to confirm everything", round),
                    // Only an archive that ignores the UID key leaves one unanswered.
                    Outcome::Unanswered => prop_assert!(
                        matches!(lists, ListMatching::IgnoresUids),
                        "round {}: a single-UID query went unanswered",
                        round
                    ),
                }
                if matches!(lists, ListMatching::All | ListMatching::FailsOnce(_)) {
                    prop_assert!(now_learnt.lists_broken.is_none(), "round {}: {:?}", round, now_learnt);
                }
                learnt = now_learnt;
                let mut flags = deleted.iter().cycle();
                archive.records.retain(|_| !flags.next().copied().unwrap_or(false));
            }
        }
    }

    /// An archive holding studies 1.2.0 to 1.2.`n - 1`, one instance each, answering in
    /// storage order with counts; `in_date_answer` says which its date-range query finds.
    fn storage_archive(
        n: usize,
        in_date_answer: impl Fn(usize) -> bool,
        lists: ListMatching,
        cap: Cap,
    ) -> Archive {
        Archive {
            records: (0..n)
                .map(|i| Record {
                    uid: format!("1.2.{i}"),
                    instances: 1,
                    in_date_answer: in_date_answer(i),
                })
                .collect(),
            lists,
            cap,
            order: Order::Storage,
            counts: Counts::Present,
            lists_failed: std::cell::Cell::new(false),
        }
    }

    /// Source studies 1.2.0 to 1.2.`n - 1`, one instance each.
    fn checked(n: usize) -> Vec<(String, Option<u64>)> {
        (0..n).map(|i| (format!("1.2.{i}"), Some(1))).collect()
    }

    /// Finding: one witness known, an archive that uses only the last value of a list.
    #[test]
    fn a_single_witness_proves_nothing() {
        let archive = storage_archive(50, |i| i == 0, ListMatching::LastOnly, Cap::None);
        let checked = checked(50);
        let (outcome, _) = probe(&archive, &checked, &Learnt::default(), 200);
        assert_eq!(outcome, truth(&archive, &checked));
    }

    /// Finding: a cap that answers success after K matches, in storage order.
    #[test]
    fn a_silent_cap_is_not_taken_for_absence() {
        let archive = storage_archive(60, |i| i % 2 == 0, ListMatching::All, Cap::Silent(20));
        let checked = checked(60);
        let (outcome, _) = probe(&archive, &checked, &Learnt::default(), 200);
        assert_eq!(outcome, truth(&archive, &checked));
    }

    /// Finding: one transient failure on a list teaches nothing.
    #[test]
    fn a_transient_failure_is_not_remembered() {
        for status in [0xA700, 0xA702, 0xC000, 0xC001] {
            let archive =
                storage_archive(10, |i| i < 5, ListMatching::FailsOnce(status), Cap::None);
            let checked = checked(12);
            let (outcome, learnt) = probe(&archive, &checked, &Learnt::default(), 3);
            assert_eq!(outcome, truth(&archive, &checked), "{status:#06x}");
            assert_eq!(learnt.lists_broken, None, "{status:#06x}");
        }
        assert!(!transient(0xC320));
    }

    /// Finding: one UID filed twice adds up on the destination.
    #[test]
    fn counts_add_up_per_uid() {
        let matches = [
            ("a".to_string(), Some(2)),
            ("a".to_string(), Some(3)),
            ("b".to_string(), Some(u64::MAX)),
            ("b".to_string(), Some(u64::MAX)),
            ("c".to_string(), Some(1)),
            ("c".to_string(), None),
        ];
        let tally = tally(&matches);
        assert_eq!(tally.get("a"), Some(Some(5)));
        assert_eq!(tally.get("b"), Some(Some(u64::MAX)));
        assert_eq!(tally.get("c"), Some(None));
        assert_eq!(tally.get("d"), None);
        assert_eq!(tally.len(), 3);
    }
}
