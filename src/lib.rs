//! pacs_exporter: a Prometheus exporter that probes PACS (DICOM) servers.
//!
//! Requests flow one way: [`web`] (HTTP: routes, pages, app state, connections, auth) →
//! `scheduler` (coalescing, the bound on work, deadlines) → `prober` (one function per
//! check, each returning a typed summary) → [`dicom`] (associations, DIMSE) → the peer;
//! metrics come back up through a registry made fresh for each probe, under the names and
//! help texts of the [`metrics`] catalogue. `history` keeps recent probes for the pages,
//! [`config`] reads modules.yml, [`target`] parses `AET@host:port`.
//!
//! `config/` holds the file's shape and its validation into one closed prober per module,
//! durations, the loading of TLS files. Each prober's own options, defaults and checks
//! live with the prober (`prober/find.rs`, `prober/send_check/options.rs`); [`config`]
//! re-exports them, so they are named `config::FindOptions`, `config::SendCheckOptions`, ...

pub(crate) mod allow;
pub mod config;
pub mod demo;
pub mod dicom;
pub(crate) mod history;
pub mod metrics;
pub(crate) mod prober;
pub(crate) mod scheduler;
pub mod target;
pub mod web;
