//! What every prober's options are checked with: [`ModuleError`], the error a module's check
//! gives (its text starts with the key below `modules.NAME`), the prober kinds it names, and
//! the checks the probers' blocks share (reserved query keys, query keywords, PDU length).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dicom::query::{self, QueryKeys};
use crate::settings::{PromDuration, TlsError, TlsSettings};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProberKind {
    Echo,
    Find,
    SendCheck,
}

impl ProberKind {
    pub fn name(self) -> &'static str {
        match self {
            ProberKind::Echo => "echo",
            ProberKind::Find => "find",
            ProberKind::SendCheck => "send_check",
        }
    }
}

impl fmt::Display for ProberKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with one module; the text starts with the key below `modules.NAME`.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("timeout: must be greater than 0")]
    ZeroTimeout,
    /// `block` is `dicom` or `send_check.destination_dicom`.
    #[error("{block}.max_pdu_length: {length} is outside 4096..=1048576")]
    PduLength { block: &'static str, length: u32 },
    #[error("send_check: required by prober send_check (it names the destination)")]
    MissingSendCheck,
    /// A `find` or `send_check` block in a module whose prober is another.
    #[error("{block}: only for prober {block}, not {prober}")]
    OtherProbersBlock {
        block: ProberKind,
        prober: ProberKind,
    },
    /// A query key that is not a DICOM keyword, or a sequence given as a value or the reverse.
    #[error("{prober}.query: {reason}")]
    Query {
        prober: ProberKind,
        reason: query::KeyError,
    },
    /// A key the prober sets itself.
    #[error("{prober}.query.{key}: not allowed here: {why}")]
    ReservedKey {
        prober: ProberKind,
        key: String,
        why: &'static str,
    },
    #[error("find.level: a worklist query has no level")]
    WorklistLevel,
    /// `max` is the longest lookback.
    #[error("send_check.lookback: must be greater than 0 and at most {max}")]
    Lookback { max: PromDuration },
    #[error("send_check.grace: must be shorter than lookback")]
    Grace,
    #[error("{0}.max_matches: must be greater than 0")]
    MaxMatches(ProberKind),
    /// A label (by its name) listed twice.
    #[error("send_check.labels: {0} is listed twice")]
    DuplicateLabel(&'static str),
    /// An attribute send_check cannot compare: `keyword` as written, and why.
    #[error("send_check.compare_attributes: {keyword:?} {why}")]
    CompareAttribute { keyword: String, why: &'static str },
    #[error("send_check.max_series_detail_studies: must be greater than 0")]
    SeriesDetailStudies,
    #[error(
        "send_check.series_detail: needs compare_instances (series are looked into for studies \
         the instance counts show incomplete)"
    )]
    SeriesDetailWithoutCounts,
    /// A `tls` block whose files cannot be read or do not go together; `block` is `dicom` or
    /// `send_check.destination_dicom`.
    #[error("{block}.tls.{}{source}", .source.key())]
    Tls {
        block: &'static str,
        source: TlsError,
    },
}

impl ModuleError {
    /// The key the error is about, as a path within the module (`find`, `query`, `StudyDat`):
    /// the key its message begins with, and for a query, the query's key.
    pub fn key(&self) -> Vec<String> {
        let message = self.to_string();
        let prefix = message
            .split_once(": ")
            .map_or(message.as_str(), |(key, _)| key);
        let mut path: Vec<String> = prefix.split('.').map(str::to_string).collect();
        if let ModuleError::Query { reason, .. } = self {
            path.extend(reason.key().split('.').map(str::to_string));
        }
        path
    }
}

/// Builds a block's TLS client config when it has a `tls` key, so unreadable files fail the
/// load; relative paths are read from `base`, and the error names the block.
pub(crate) fn load_tls(
    tls: &mut Option<TlsSettings>,
    base: &Path,
    block: &'static str,
) -> Result<(), ModuleError> {
    match tls {
        Some(tls) => tls
            .build(base)
            .map_err(|source| ModuleError::Tls { block, source }),
        None => Ok(()),
    }
}

/// Most matches a prober that reads them takes from one peer, unless its block says otherwise:
/// the same bound for `find` and `send_check`.
pub(crate) fn default_max_matches() -> usize {
    100_000
}

/// Keys a prober sets itself may not be given in its query.
pub(crate) fn reserved_keys(
    prober: ProberKind,
    keys: &QueryKeys,
    reserved: &[&str],
    why: &'static str,
) -> Result<(), ModuleError> {
    match keys.keys().find(|k| reserved.contains(&k.as_str())) {
        Some(key) => Err(ModuleError::ReservedKey {
            prober,
            key: key.clone(),
            why,
        }),
        None => Ok(()),
    }
}

/// `block` is the key of the `dicom` block that gives `length`.
pub(crate) fn check_pdu(block: &'static str, length: u32) -> Result<(), ModuleError> {
    if (4096..=1_048_576).contains(&length) {
        Ok(())
    } else {
        Err(ModuleError::PduLength { block, length })
    }
}

/// Checks a query's keywords.
pub(crate) fn check_query(prober: ProberKind, keys: &QueryKeys) -> Result<(), ModuleError> {
    query::validate(keys).map_err(|reason| ModuleError::Query { prober, reason })
}
