//! What transfer checks learnt of the archives they queried, kept between probes.
//!
//! The table is a value the scheduler owns and hands to every probe ([`crate::prober::run`]),
//! never a process-wide static. It is keyed by everything that changes how an archive
//! answers: its address, the called and calling AE titles, and whether (and as whom) TLS is
//! spoken; two modules that reach the same archive the same way share what they learnt. It
//! holds at most [`MAX_ARCHIVES`] archives (targets come from requests), forgetting the one
//! used least recently, and forgets a broken list matching after [`RETEST_AFTER`], so
//! that an upgraded archive is tried again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::compare::Offsets;
use super::plan::Learnt;
use crate::prober::peer::called_aet;
use crate::settings::DicomOptions;
use crate::target::Target;

/// How long an archive's broken list matching, or a source's offsets, are remembered before
/// they are tested again.
pub(super) const RETEST_AFTER: Duration = Duration::from_secs(3600);

/// Archives remembered at once.
pub const MAX_ARCHIVES: usize = 4096;

/// Who an archive is, as far as its answers go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ArchiveKey {
    host: String,
    port: u16,
    called_aet: String,
    calling_aet: String,
    /// The TLS server name checked, or an empty string for TLS without one; `None`: plain.
    tls: Option<String>,
}

impl ArchiveKey {
    pub fn new(target: &Target, dicom: &DicomOptions) -> ArchiveKey {
        ArchiveKey {
            host: target.host.to_string(),
            port: target.port,
            called_aet: called_aet(target, dicom).to_string(),
            calling_aet: dicom.calling_aet.as_str().to_string(),
            tls: dicom
                .tls
                .as_ref()
                .map(|tls| tls.server_name.clone().unwrap_or_default()),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    learnt: Learnt,
    broken_since: Option<Instant>,
    /// The TimezoneOffsetFromUTC values its study matches carried when it was last asked, and
    /// since when that is known.
    offsets: Option<(Offsets, Instant)>,
    used: Instant,
}

/// What probes learnt of archives; see the module documentation.
#[derive(Debug, Default)]
pub struct Archives {
    table: Mutex<HashMap<ArchiveKey, Entry>>,
}

impl Archives {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<ArchiveKey, Entry>) -> T) -> T {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut table)
    }

    /// What earlier probes learnt of `key`'s list matching, a broken one forgotten after
    /// [`RETEST_AFTER`].
    pub(super) fn recall(&self, key: &ArchiveKey) -> Learnt {
        let now = Instant::now();
        self.with(|table| match table.get_mut(key) {
            None => Learnt::default(),
            Some(entry) => {
                entry.used = now;
                if entry
                    .broken_since
                    .is_some_and(|since| now.duration_since(since) > RETEST_AFTER)
                {
                    entry.learnt.lists_broken = None;
                    entry.broken_since = None;
                }
                entry.learnt.clone()
            }
        })
    }

    /// Keeps what a probe learnt of `key`'s list matching: lists seen broken, or seen to
    /// prove themselves; a probe that did not try them leaves what is known as it is (so a
    /// broken list matching is still forgotten on time), and its witnesses replace the old.
    pub(super) fn remember(&self, key: &ArchiveKey, learnt: Learnt) {
        let now = Instant::now();
        self.with(|table| {
            let entry = entry(table, key, now);
            match (&learnt.lists_broken, learnt.lists_proven) {
                (Some(_), _) => {
                    if entry.learnt.lists_broken.is_none() {
                        entry.broken_since = Some(now);
                    }
                    entry.learnt.lists_broken = learnt.lists_broken.clone();
                }
                (None, true) => {
                    entry.learnt.lists_broken = None;
                    entry.broken_since = None;
                }
                (None, false) => {}
            }
            if !learnt.witnesses.is_empty() {
                entry.learnt.witnesses = learnt.witnesses;
            }
        });
    }

    /// The TimezoneOffsetFromUTC values `key`'s study matches carry: [`Offsets::Unknown`] when
    /// it was never asked, showed no study, or was asked longer ago than [`RETEST_AFTER`] (a
    /// source reconfigured to send offsets is seen to).
    pub(super) fn offsets(&self, key: &ArchiveKey) -> Offsets {
        let now = Instant::now();
        self.with(|table| fresh_offsets(table.get(key), now).0)
    }

    /// Keeps the westernmost offset `key`'s studies carried (`None`: none carried one), the
    /// one already known included while it is fresh.
    pub(super) fn remember_offsets(&self, key: &ArchiveKey, westernmost: Option<i32>) {
        let now = Instant::now();
        self.with(|table| {
            let (known, since) = fresh_offsets(table.get(key), now);
            // A source known to send offsets keeps that while it is fresh, even through a
            // window in which none of its studies carried one; and it is asked again for all
            // offsets when that knowledge is an hour old.
            let offsets = match (known, westernmost) {
                (Offsets::Westernmost(known), Some(seen)) => Offsets::Westernmost(known.min(seen)),
                (Offsets::Westernmost(known), None) => Offsets::Westernmost(known),
                (_, Some(seen)) => Offsets::Westernmost(seen),
                (_, None) => Offsets::None,
            };
            let since = match since {
                Some(since) if offsets != Offsets::None => since,
                _ => now,
            };
            entry(table, key, now).offsets = Some((offsets, since));
        });
    }
}

/// What `entry` knows of its source's offsets while that is fresh, and since when;
/// [`Offsets::Unknown`] otherwise.
fn fresh_offsets(entry: Option<&Entry>, now: Instant) -> (Offsets, Option<Instant>) {
    match entry.and_then(|entry| entry.offsets) {
        Some((offsets, since)) if now.duration_since(since) <= RETEST_AFTER => {
            (offsets, Some(since))
        }
        _ => (Offsets::Unknown, None),
    }
}

/// `key`'s entry, made (and the least recently used one forgotten, when full) if missing.
fn entry<'t>(
    table: &'t mut HashMap<ArchiveKey, Entry>,
    key: &ArchiveKey,
    now: Instant,
) -> &'t mut Entry {
    if !table.contains_key(key) && table.len() >= MAX_ARCHIVES {
        let oldest = table
            .iter()
            .min_by_key(|(_, entry)| entry.used)
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            table.remove(&oldest);
        }
    }
    let entry = table.entry(key.clone()).or_insert_with(|| Entry {
        learnt: Learnt::default(),
        broken_since: None,
        offsets: None,
        used: now,
    });
    entry.used = now;
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of `target` reached with a module's `dicom` block (YAML).
    fn key(dicom: &str, target: &str) -> ArchiveKey {
        let dicom: DicomOptions = yaml_serde::from_str(dicom).unwrap_or_else(|e| panic!("{e}"));
        let target = Target::parse(target).unwrap_or_else(|e| panic!("{e}"));
        ArchiveKey::new(&target, &dicom)
    }

    const PLAIN: &str = "{}";

    /// What one way of reaching an archive showed is not taught to another: calling AE titles
    /// (which many archives answer differently) and TLS are part of who it is.
    #[tokio::test]
    async fn archives_are_told_apart_by_everything_that_changes_their_answers() {
        let archives = Archives::default();
        let broken = Learnt {
            lists_broken: Some("answered a UID list with status 0xc320".into()),
            lists_proven: false,
            witnesses: vec!["1.2.3".into()],
        };
        let plain = key(PLAIN, "ARCHIVE@127.0.0.1:104");
        archives.remember(&plain, broken.clone());
        assert_eq!(archives.recall(&plain), broken);

        let others = [
            key(PLAIN, "OTHER@127.0.0.1:104"),
            key(PLAIN, "ARCHIVE@127.0.0.1:105"),
            key("{calling_aet: SECOND}", "ARCHIVE@127.0.0.1:104"),
            key("tls: {insecure_skip_verify: true}", "ARCHIVE@127.0.0.1:104"),
        ];
        for other in &others {
            assert_ne!(other, &plain);
            assert_eq!(archives.recall(other), Learnt::default(), "{other:?}");
        }
        // The same archive named by the module's called_aet is the same archive.
        let named = key("{called_aet: ARCHIVE}", "127.0.0.1:104");
        assert_eq!(named, plain);
    }

    /// A probe that took a broken list matching on trust teaches nothing: the archive is not
    /// marked broken anew (which would put off its retest), and one that saw a list prove
    /// itself clears it.
    #[tokio::test]
    async fn only_what_a_probe_saw_is_taught() {
        let archives = Archives::default();
        let plain = key(PLAIN, "ARCHIVE@127.0.0.1:104");
        let seen = |broken: Option<&str>, proven: bool| Learnt {
            lists_broken: broken.map(String::from),
            lists_proven: proven,
            witnesses: vec!["1.2.3".into(), "1.2.4".into()],
        };
        archives.remember(&plain, seen(Some("refused"), false));
        let since = archives.with(|table| table.get(&plain).and_then(|e| e.broken_since));
        assert!(since.is_some());
        // On trust: nothing changes, not even when it was marked.
        archives.remember(&plain, seen(None, false));
        assert_eq!(
            archives.recall(&plain).lists_broken.as_deref(),
            Some("refused")
        );
        let again = archives.with(|table| table.get(&plain).and_then(|e| e.broken_since));
        assert_eq!(again, since);
        // Seen to work: cleared.
        archives.remember(&plain, seen(None, true));
        assert_eq!(archives.recall(&plain).lists_broken, None);
    }

    /// A source known to send offsets is still asked for them after a window without any.
    #[tokio::test]
    async fn a_quiet_window_keeps_the_offsets_asked_for() {
        let archives = Archives::default();
        let source = key(PLAIN, "SOURCE@127.0.0.1:104");
        assert_eq!(archives.offsets(&source), Offsets::Unknown);
        archives.remember_offsets(&source, Some(-5 * 3600));
        archives.remember_offsets(&source, None);
        assert_eq!(archives.offsets(&source), Offsets::Westernmost(-5 * 3600));
        let quiet = key(PLAIN, "QUIET@127.0.0.1:104");
        archives.remember_offsets(&quiet, None);
        assert_eq!(archives.offsets(&quiet), Offsets::None);
    }
}
