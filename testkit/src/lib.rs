//! pacs_exporter's test support, one home for the integration tests (`tests/it`), the
//! benchmarks (`examples/bench`) and the fuzz targets (`fuzz/`): real peers on loopback ports
//! that never race for them, scripted peers for faults a real server will not produce, the
//! exporter in process and as its binary, one HTTP client, and the fuzz targets' bodies.

pub mod binary;
pub mod certs;
pub mod exporter;
pub mod fuzz;
pub mod http;
pub mod metrics;
pub mod modules;
pub mod output;
pub mod peers;
pub mod process;
pub mod prometheus;
pub mod scenario;
pub mod scripted;
pub mod studies;
