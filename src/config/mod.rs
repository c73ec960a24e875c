//! modules.yml, the file: its shape ([`Config`], `allowed_targets` and the `modules` map),
//! load/parse/render, the warnings, and the errors that name the file and the module.
//!
//! A module itself is the probers' ([`Module`], the [`Prober`] dispatch and each prober's own
//! block, defaults and checks live in `prober::module`, `prober::checks`, `prober::find` and
//! `prober::send_check::options`); the values modules are written in (durations, time zones,
//! targets, the `dicom` and `tls` blocks) are `settings`. Both are re-exported here, so every
//! config type has one public path: `config::Module`, `config::FindOptions`,
//! `config::PromDuration`, ...
//!
//! Parsing is strict: an unknown key, a bad duration, an invalid AE title or an unknown prober is
//! an error that names the module and the key, with its line: the YAML library's for what it
//! refuses while reading, the private `locate`'s for what the checks after it refuse. A config
//! that fails here is never half-applied.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod locate;

use crate::allow::{AllowList, AllowListError};
use crate::prober::module::ModuleFile;

pub use crate::prober::checks::{ModuleError, ProberKind};
pub use crate::prober::find::{FindOptions, Level, Model};
pub use crate::prober::module::{Module, Prober, DEFAULT_TIMEOUT};
pub use crate::prober::send_check::options::{DestinationQuery, SendCheckOptions, StudyLabel};
pub use crate::settings::{
    DicomOptions, DicomOverrides, InvalidDuration, PromDuration, TargetSpec, TimeZone, TlsError,
    TlsSettings, DEFAULT_CALLED_AET, DEFAULT_CALLING_AET, DEFAULT_MAX_PDU_LENGTH,
};

/// A validated config: every module a closed [`Prober`] with its own options.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Config {
    /// CIDRs or host names (optionally with `:port`) a probe may reach; empty means any.
    pub allowed_targets: Vec<String>,
    pub modules: BTreeMap<String, Module>,
    /// `allowed_targets`, parsed.
    #[serde(skip)]
    pub allow: AllowList,
}

/// modules.yml as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    allowed_targets: Vec<String>,
    #[serde(default)]
    modules: BTreeMap<String, ModuleFile>,
}

/// Why a config was refused. The text is meant for the operator: it names the file, the module
/// and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        source: Box<ParseError>,
    },
}

/// Why config text was refused; one line naming the key (and the module).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A file without modules would make every probe answer 400; it is refused like a broken
    /// one.
    #[error("modules: no module is defined; a config needs at least one")]
    NoModules,
    #[error("modules: a module has an empty name")]
    EmptyModuleName,
    /// The text is not YAML, or does not have the config's shape: an unknown key, a missing
    /// one, or a value its type refuses (a duration, an AE title, a target, a label...).
    /// `path` is the key, where there is one to name.
    /// `at` is the key's line, which replaces the library's.
    #[error("{}{}", yaml_message(.path.as_deref(), .source, .at.is_some()), Line(*.at))]
    Yaml {
        path: Option<String>,
        source: yaml_serde::Error,
        at: Option<(usize, usize)>,
    },
    #[error("allowed_targets: {source}{}", Line(*.at))]
    AllowedTargets {
        source: AllowListError,
        at: Option<(usize, usize)>,
    },
    #[error("modules.{name}.{source}{}", Line(*.at))]
    Module {
        name: String,
        source: ModuleError,
        at: Option<(usize, usize)>,
    },
}

/// serde_path_to_error's path as keys and indices (a module's name may hold dots); `None`
/// where a step of it is unknown.
fn key_segments(path: &serde_path_to_error::Path) -> Option<Vec<String>> {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// Where in the file, as the YAML library says it: " at line 5 column 7".
struct Line(Option<(usize, usize)>);

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, " at line {line} column {column}"),
            None => Ok(()),
        }
    }
}

/// The YAML library's message under our key path. Its message may start with its own path,
/// which stops at the enclosing mapping where ours names the key: ours replaces it. With
/// `located`, the library's own " at line L column C" is left out for ours.
fn yaml_message(path: Option<&str>, error: &yaml_serde::Error, located: bool) -> String {
    let mut inner = error.to_string();
    if located {
        if let Some(at) = inner.rfind(" at line ") {
            inner.truncate(at);
        }
    }
    let Some(path) = path else {
        return inner;
    };
    match inner.split_once(": ") {
        Some((prefix, rest)) if path.starts_with(prefix) && !prefix.contains(' ') => {
            format!("{path}: {rest}")
        }
        _ => format!("{path}: {inner}"),
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_in(&text, base).map_err(|source| ConfigError::Invalid {
            path: path.display().to_string(),
            source: Box::new(source),
        })
    }

    /// Parses and validates config text; the error is one line naming the module and key.
    /// Relative file paths are read from the working directory.
    pub fn parse(text: &str) -> Result<Config, ParseError> {
        Config::parse_in(text, Path::new("."))
    }

    /// Like [`Config::parse`], with relative file paths read from `base`.
    pub fn parse_in(text: &str, base: &Path) -> Result<Config, ParseError> {
        if text.trim().is_empty() {
            return Err(ParseError::NoModules);
        }
        // serde_path_to_error names the key even where the YAML library's own path stops at
        // the enclosing mapping (errors raised by our own types: durations, AE titles).
        let file: ConfigFile = serde_path_to_error::deserialize(
            yaml_serde::Deserializer::from_str(text),
        )
        .map_err(|e| {
            // The library's line is that of the enclosing mapping for some errors (a bad
            // duration) and missing from others (an unknown top-level key): the key's own line
            // replaces it. An empty or partly unknown path locates nothing.
            let at = key_segments(e.path()).and_then(|segments| locate::locate(text, &segments));
            let path = e.path().to_string();
            let path = (path != "." && !path.contains('?')).then_some(path);
            let source = e.into_inner();
            ParseError::Yaml { path, source, at }
        })?;
        let allow = AllowList::parse(&file.allowed_targets).map_err(|source| {
            let index = file
                .allowed_targets
                .iter()
                .position(|entry| entry == source.entry())
                .unwrap_or_default();
            let at = locate::locate(text, &["allowed_targets".into(), index.to_string()]);
            ParseError::AllowedTargets { source, at }
        })?;
        if file.modules.is_empty() {
            return Err(ParseError::NoModules);
        }
        let mut modules = BTreeMap::new();
        for (name, module) in file.modules {
            if name.is_empty() {
                return Err(ParseError::EmptyModuleName);
            }
            let module = module
                .validated()
                .and_then(|mut module| module.load_tls(base).map(|()| module))
                .map_err(|source| {
                    let mut key = vec!["modules".to_string(), name.clone()];
                    key.extend(source.key());
                    ParseError::Module {
                        at: locate::locate(text, &key),
                        name: name.clone(),
                        source,
                    }
                })?;
            modules.insert(name, module);
        }
        Ok(Config {
            allowed_targets: file.allowed_targets,
            modules,
            allow,
        })
    }

    /// The config as YAML, for `/config` and `debug=true`.
    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// What is valid but likely wrong, one line per kind of mistake (naming every module it
    /// concerns), for `--config.check`, start-up and each reload to log once: send_check
    /// modules without `timezone` while the process runs in UTC (as containers do) read every
    /// StudyDate/StudyTime as UTC, so sites east of UTC get their alerts hours late and sites
    /// west of it get false alarms.
    pub fn warnings(&self) -> Vec<String> {
        if chrono::Local::now().offset().local_minus_utc() != 0 {
            return Vec::new();
        }
        let unzoned: Vec<&str> = self
            .modules
            .iter()
            .filter(|(_, m)| m.send_check().is_some_and(|c| c.timezone.is_none()))
            .map(|(name, _)| name.as_str())
            .collect();
        let which = match unzoned.as_slice() {
            [] => return Vec::new(),
            [one] => format!("modules.{one}.send_check.timezone is not set"),
            many => format!(
                "send_check.timezone is not set in {} modules ({})",
                many.len(),
                many.join(", ")
            ),
        };
        vec![format!(
            "{which} and the exporter's zone is UTC: StudyDate/StudyTime without \
             TimezoneOffsetFromUTC are read as UTC; set timezone (e.g. Europe/Moscow) or the TZ \
             environment variable"
        )]
    }
}

#[cfg(test)]
mod tests;
