//! Recent probes, for the landing page and `/logs`: the scheduler records every probe it ran
//! here, the pages read them.
//!
//! Successes and failures are kept in separate rings of `--history.limit` entries each, so a
//! stream of successful scrapes never pushes the last failure out: the probe an operator wants
//! to read at night is the one that failed.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::prober::{Failure, Summary};

/// One finished probe.
#[derive(Clone, Debug)]
pub struct ProbeRecord {
    pub id: u64,
    pub started_at: SystemTime,
    pub module: String,
    pub target: String,
    /// A transfer check's destination (`AET@host:port`), from its module.
    pub destination: Option<String>,
    pub duration: Duration,
    pub failure: Option<Failure>,
    /// The probe's log, rendered.
    pub log: String,
    /// What the probe found beyond its verdict, if it succeeded: e.g. a transfer check's
    /// counts of studies checked, missing and incomplete.
    pub summary: Option<Summary>,
}

impl ProbeRecord {
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }
}

pub struct History {
    limit: usize,
    next_id: u64,
    successes: VecDeque<ProbeRecord>,
    failures: VecDeque<ProbeRecord>,
}

impl History {
    pub fn new(limit: usize) -> History {
        History {
            limit,
            next_id: 0,
            successes: VecDeque::new(),
            failures: VecDeque::new(),
        }
    }

    /// Records a probe and returns its id.
    pub fn add(&mut self, mut record: ProbeRecord) -> u64 {
        record.id = self.next_id;
        self.next_id += 1;
        if self.limit == 0 {
            return record.id;
        }
        let ring = if record.success() {
            &mut self.successes
        } else {
            &mut self.failures
        };
        if ring.len() == self.limit {
            ring.pop_front();
        }
        let id = record.id;
        ring.push_back(record);
        id
    }

    pub fn get(&self, id: u64) -> Option<&ProbeRecord> {
        self.successes
            .iter()
            .chain(&self.failures)
            .find(|r| r.id == id)
    }

    /// The latest probe of `module` and `target` (and of a route's `destination`, if given).
    pub fn latest(
        &self,
        module: &str,
        target: &str,
        destination: Option<&str>,
    ) -> Option<&ProbeRecord> {
        self.successes
            .iter()
            .chain(&self.failures)
            .filter(|r| r.module == module && r.target == target)
            .filter(|r| destination.is_none() || r.destination.as_deref() == destination)
            .max_by_key(|r| r.id)
    }

    /// Every kept probe, newest first.
    pub fn recent(&self) -> Vec<&ProbeRecord> {
        let mut all: Vec<&ProbeRecord> = self.successes.iter().chain(&self.failures).collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prober::{Reason, Stage};

    fn record(module: &str, failed: bool) -> ProbeRecord {
        ProbeRecord {
            id: 0,
            started_at: SystemTime::now(),
            module: module.into(),
            target: "A@127.0.0.1:104".into(),
            destination: None,
            duration: Duration::from_millis(1),
            failure: failed.then(|| Failure::new(Stage::Connect, Reason::Refused, "refused")),
            log: String::new(),
            summary: None,
        }
    }

    #[test]
    fn successes_do_not_push_failures_out() {
        let mut history = History::new(3);
        let failed = history.add(record("echo", true));
        for _ in 0..10 {
            history.add(record("echo", false));
        }
        assert!(history.get(failed).is_some_and(|r| !r.success()));
        let recent = history.recent();
        assert_eq!(recent.len(), 4);
        assert_eq!(recent[0].id, 10);
        assert_eq!(
            history
                .latest("echo", "A@127.0.0.1:104", None)
                .map(|r| r.id),
            Some(10)
        );
        assert!(history.latest("find", "A@127.0.0.1:104", None).is_none());
    }

    #[test]
    fn rings_are_bounded() {
        let mut history = History::new(2);
        let ids: Vec<u64> = (0..5)
            .map(|i| history.add(record("echo", i % 2 == 0)))
            .collect();
        assert_eq!(history.recent().len(), 4);
        assert!(history.get(ids[0]).is_none());
        assert!(history.get(ids[4]).is_some());
    }
}
