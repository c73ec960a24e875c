//! Which connections the server keeps when they run short, so that whatever one client does,
//! another client's scrape gets through. Every connection is accepted at once (nothing waits in
//! the kernel's queue); then:
//!
//! - A client address holding `--web.max-connections-per-client` connections makes room by
//!   closing its own longest-idle kept-alive connection; with none idle, the new connection is
//!   refused.
//! - When `--web.max-connections` are open, room is made by closing a connection that is not
//!   handling a request: an idle kept-alive one first (any client's; the longest idle of the
//!   client holding most), else one that has not yet sent a whole request head, taken only from
//!   a client that holds more connections than the newcomer's would with this one (max-min
//!   fairness: a burst from one address never evicts its own fresh connections, a holder of
//!   many gives way to a client with few). With nothing to close the connection is refused.
//! - A connection handling a request is never closed to make room.
//!
//! A refused connection is answered at once with a 503 and the reason (see `connections`).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepted; nothing received yet.
    Fresh,
    /// Part of a request head received.
    Reading,
    /// Kept alive between requests.
    Idle,
    /// Handling a request (until its answer is written).
    Busy,
}

/// An open connection as the admission table sees it.
pub(super) trait Occupant: Send + Sync {
    /// Its phase and when that phase began.
    fn phase(&self) -> (Phase, Instant);
    /// Closes it to make room, unless it has become busy meanwhile (then `false`).
    fn evict(&self) -> bool;
}

/// Why a connection was refused; the text is the one-line reason sent to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The client's address holds its limit, none of them idle.
    ClientLimit { client: IpAddr, limit: usize },
    /// Every connection is handling a request or belongs to a client holding no more than
    /// the newcomer's.
    Full { limit: usize },
}

impl Refusal {
    /// The `reason` label of `pacs_exporter_http_connections_refused_total`.
    pub(super) fn cause(&self) -> &'static str {
        match self {
            Refusal::ClientLimit { .. } => "client_limit",
            Refusal::Full { .. } => "full",
        }
    }

    pub(super) const CAUSES: [&'static str; 2] = ["client_limit", "full"];
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ClientLimit { client, limit } => write!(
                f,
                "{client} already holds {limit} connections, none of them idle \
                 (--web.max-connections-per-client)"
            ),
            Refusal::Full { limit } => write!(
                f,
                "all {limit} connections are handling requests (--web.max-connections); try again"
            ),
        }
    }
}

/// The open connections and the limits they are held to.
pub(super) struct Admission {
    total: usize,
    per_client: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Seated>,
    per_client: HashMap<IpAddr, usize>,
}

struct Seated {
    client: IpAddr,
    occupant: Arc<dyn Occupant>,
}

/// A connection's place; dropping it frees the place.
pub(super) struct Seat {
    admission: Arc<Admission>,
    id: u64,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.admission.table().remove(self.id);
    }
}

/// A connection admitted, and whether another was closed to make room for it.
pub(super) struct Admitted {
    pub seat: Seat,
    pub evicted: bool,
}

impl Admission {
    /// `per_client` 0 means three quarters of `total`.
    pub(super) fn new(total: usize, per_client: usize) -> Arc<Admission> {
        let total = total.max(1);
        let per_client = match per_client {
            0 => (total * 3 / 4).max(1),
            n => n.min(total),
        };
        Arc::new(Admission {
            total,
            per_client,
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `client`, closing another to make room if it must.
    pub(super) fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        occupant: Arc<dyn Occupant>,
    ) -> Result<Admitted, Refusal> {
        let mut table = self.table();
        let held = table.held_by(client);
        let mut evicted = false;
        if held >= self.per_client {
            let own = table.candidates(|c| c == client, |_| false);
            if !table.evict_first(own) {
                return Err(Refusal::ClientLimit {
                    client,
                    limit: self.per_client,
                });
            }
            evicted = true;
        } else if table.open.len() >= self.total {
            let fresh_from = |holder: usize| holder > held + 1;
            let candidates = table.candidates(|_| true, fresh_from);
            if !table.evict_first(candidates) {
                return Err(Refusal::Full { limit: self.total });
            }
            evicted = true;
        }
        let id = table.next_id;
        table.next_id += 1;
        table.open.insert(id, Seated { client, occupant });
        *table.per_client.entry(client).or_insert(0) += 1;
        Ok(Admitted {
            seat: Seat {
                admission: self.clone(),
                id,
            },
            evicted,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.table().open.len()
    }
}

/// A connection that may be closed to make room, with what orders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    id: u64,
    phase: Phase,
    since: Instant,
    /// Connections its client holds.
    holder: usize,
}

impl Table {
    fn held_by(&self, client: IpAddr) -> usize {
        self.per_client.get(&client).copied().unwrap_or(0)
    }

    fn remove(&mut self, id: u64) {
        if let Some(seated) = self.open.remove(&id) {
            if let Some(held) = self.per_client.get_mut(&seated.client) {
                *held -= 1;
                if *held == 0 {
                    self.per_client.remove(&seated.client);
                }
            }
        }
    }

    /// The connections of clients `whose` that may be closed, best first: idle ones, then
    /// fresh or half-read ones of a client whose holding passes `fresh_from`.
    fn candidates(
        &self,
        whose: impl Fn(IpAddr) -> bool,
        fresh_from: impl Fn(usize) -> bool,
    ) -> Vec<Candidate> {
        let mut candidates: Vec<Candidate> = self
            .open
            .iter()
            .filter(|(_, seated)| whose(seated.client))
            .map(|(&id, seated)| {
                let (phase, since) = seated.occupant.phase();
                let holder = self.held_by(seated.client);
                Candidate {
                    id,
                    phase,
                    since,
                    holder,
                }
            })
            .filter(|c| match c.phase {
                Phase::Idle => true,
                Phase::Fresh | Phase::Reading => fresh_from(c.holder),
                Phase::Busy => false,
            })
            .collect();
        candidates.sort_by_key(|c| (c.phase != Phase::Idle, std::cmp::Reverse(c.holder), c.since));
        candidates
    }

    /// Closes the first of `candidates` that is still not busy and frees its place.
    fn evict_first(&mut self, candidates: Vec<Candidate>) -> bool {
        for candidate in candidates {
            let evicted = self
                .open
                .get(&candidate.id)
                .is_some_and(|seated| seated.occupant.evict());
            if evicted {
                self.remove(candidate.id);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    struct Fake {
        phase: Mutex<(Phase, Instant)>,
        evicted: AtomicBool,
    }

    impl Fake {
        fn new(phase: Phase, age_ms: u64) -> Arc<Fake> {
            let since = Instant::now() - Duration::from_millis(age_ms);
            Arc::new(Fake {
                phase: Mutex::new((phase, since)),
                evicted: AtomicBool::new(false),
            })
        }
        fn evicted(&self) -> bool {
            self.evicted.load(Ordering::SeqCst)
        }
    }

    impl Occupant for Fake {
        fn phase(&self) -> (Phase, Instant) {
            *self.phase.lock().unwrap()
        }
        fn evict(&self) -> bool {
            if self.phase().0 == Phase::Busy {
                return false;
            }
            self.evicted.store(true, Ordering::SeqCst);
            true
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// Admits `phases` from `client`, keeping the seats open.
    fn fill(
        admission: &Arc<Admission>,
        client: IpAddr,
        phases: &[(Phase, u64)],
    ) -> Vec<(Arc<Fake>, Seat)> {
        phases
            .iter()
            .map(|&(phase, age)| {
                let fake = Fake::new(phase, age);
                let admitted = admission.admit(client, fake.clone()).unwrap();
                assert!(!admitted.evicted);
                (fake, admitted.seat)
            })
            .collect()
    }

    #[test]
    fn an_idle_connection_makes_room_before_anything_else() {
        let admission = Admission::new(4, 4);
        let held = fill(
            &admission,
            ip(1),
            &[
                (Phase::Busy, 50),
                (Phase::Fresh, 90),
                (Phase::Idle, 10),
                (Phase::Idle, 40),
            ],
        );
        let admitted = admission.admit(ip(2), Fake::new(Phase::Fresh, 0)).unwrap();
        assert!(admitted.evicted);
        let evicted: Vec<bool> = held.iter().map(|(f, _)| f.evicted()).collect();
        assert_eq!(
            evicted,
            [false, false, false, true],
            "the longest idle goes"
        );
        assert_eq!(admission.open(), 4);
    }

    #[test]
    fn a_holder_of_many_gives_way_but_a_burst_never_evicts_itself() {
        let admission = Admission::new(4, 4);
        let held = fill(
            &admission,
            ip(1),
            &[(Phase::Fresh, 10), (Phase::Reading, 30), (Phase::Busy, 0)],
        );
        let _other = fill(&admission, ip(2), &[(Phase::Busy, 0)]);
        // The holder's own next connection: nothing idle, and it holds the most.
        assert_eq!(
            admission.admit(ip(1), Fake::new(Phase::Fresh, 0)).err(),
            Some(Refusal::Full { limit: 4 })
        );
        // A client holding 1 (ip 2) takes the half-read connection that has waited longest.
        let admitted = admission.admit(ip(2), Fake::new(Phase::Fresh, 0)).unwrap();
        assert!(admitted.evicted);
        assert!(held[1].0.evicted() && !held[0].0.evicted());
        // Now ip 1 holds 2 and ip 2 holds 2: a third address may still take one of ip 1's.
        let admitted = admission.admit(ip(3), Fake::new(Phase::Fresh, 0)).unwrap();
        assert!(held[0].0.evicted() && admitted.evicted);
        // ip 2 (holding 2, all fresh or busy) and ip 1 (1 busy) give nothing to ip 3 (1).
        assert_eq!(
            admission.admit(ip(3), Fake::new(Phase::Fresh, 0)).err(),
            Some(Refusal::Full { limit: 4 })
        );
    }

    #[test]
    fn a_client_at_its_limit_makes_room_from_its_own_idle_connections() {
        let admission = Admission::new(10, 2);
        let held = fill(&admission, ip(1), &[(Phase::Busy, 0), (Phase::Idle, 5)]);
        let admitted = admission.admit(ip(1), Fake::new(Phase::Fresh, 0)).unwrap();
        assert!(admitted.evicted && held[1].0.evicted());
        // Both now busy: the next one is refused, naming the limit; another address is not.
        *held[1].0.phase.lock().unwrap() = (Phase::Busy, Instant::now());
        let _busy = admitted.seat;
        let refusal = admission
            .admit(ip(1), Fake::new(Phase::Fresh, 0))
            .err()
            .unwrap();
        assert_eq!(
            refusal,
            Refusal::ClientLimit {
                client: ip(1),
                limit: 2
            }
        );
        assert!(refusal
            .to_string()
            .contains("--web.max-connections-per-client"));
        assert!(admission.admit(ip(2), Fake::new(Phase::Fresh, 0)).is_ok());
    }

    #[test]
    fn a_closed_connection_frees_its_place_and_the_default_client_limit_is_three_quarters() {
        let admission = Admission::new(8, 0);
        let seats = fill(&admission, ip(1), &[(Phase::Busy, 0); 6]);
        assert!(matches!(
            admission.admit(ip(1), Fake::new(Phase::Fresh, 0)),
            Err(Refusal::ClientLimit { limit: 6, .. })
        ));
        drop(seats);
        assert_eq!(admission.open(), 0);
        assert!(admission.table().per_client.is_empty());
    }
}
