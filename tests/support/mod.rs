//! Shared test support: real peers, scripted peers, and the exporter's router in-process.

pub mod binary;
pub mod certs;
pub mod exporter;
pub mod metrics;
pub mod peers;
pub mod prometheus;
pub mod scenario;
pub mod scripted;
pub mod studies;
