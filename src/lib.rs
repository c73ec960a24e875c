//! pacs_exporter: a Prometheus exporter that probes PACS (DICOM) servers.
//!
//! Requests flow one way: [`server`] (HTTP) → [`prober`] (one function per check) →
//! [`dicom`] (associations, DIMSE) → the peer; metrics come back up through a registry made
//! fresh for each probe. [`config`] reads modules.yml, [`target`] parses `AET@host:port`.

pub(crate) mod allow;
pub mod config;
pub mod demo;
pub mod dicom;
pub(crate) mod history;
pub mod http;
pub mod metrics;
pub(crate) mod prober;
pub(crate) mod scheduler;
pub mod server;
pub mod target;
pub mod web;
