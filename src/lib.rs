//! pacs_exporter: a Prometheus exporter that probes PACS (DICOM) servers.
//!
//! Requests flow one way: [`web`] (HTTP: routes, pages, app state, connections, auth) →
//! `scheduler` (coalescing, the bound on work, deadlines) → `prober` (one function per
//! check, each returning a typed summary) → [`dicom`] (associations, DIMSE) → the peer;
//! metrics come back up through a `Sheet` made fresh for each probe (`exposition`, which
//! also writes their text), under the names and help texts of the [`metrics`] catalogue. `history` keeps recent probes for the pages,
//! [`config`] reads modules.yml, [`target`] parses `AET@host:port`.
//!
//! Settings, from the bottom up: `settings` holds the values modules are written in
//! (durations, time zones, targets, the `dicom` and `tls` blocks, loading TLS files); each
//! prober's own block, its defaults and its checks live with the prober (`prober/find.rs`,
//! `prober/send_check/options.rs`), and `prober/module.rs` closes a module into one prober;
//! [`config`] reads the file and re-exports all of it, so a config type has one public path
//! (`config::Module`, `config::FindOptions`, `config::PromDuration`, ...).

pub(crate) mod allow;
pub mod config;
pub mod demo;
pub mod dicom;
pub(crate) mod exposition;
pub(crate) mod history;
pub mod metrics;
pub(crate) mod prober;
pub(crate) mod scheduler;
pub(crate) mod settings;
pub mod target;
pub mod web;
