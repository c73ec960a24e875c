//! pacs_exporter: a Prometheus exporter that probes PACS (DICOM) servers.
//!
//! Requests flow one way: [`web`] (HTTP: routes, pages, app state, connections, auth) →
//! [`scheduler`] (coalescing, the bound on work, deadlines) → [`prober`] (one function per
//! check, each returning a typed summary) → [`dicom`] (associations, DIMSE) → the peer;
//! metrics come back up through a registry made fresh for each probe, under the names and
//! help texts of the [`metrics`] catalogue. [`history`] keeps recent probes for the pages,
//! [`config`] reads modules.yml, [`target`] parses `AET@host:port`.

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
