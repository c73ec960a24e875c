//! modules.yml: the file's shape, and its validation into a closed [`Prober`] per module.
//!
//! Here is what is about the file and the module as a whole: [`Config`] and [`Module`], the
//! [`Prober`] dispatch, load/parse/render, the warnings, the error types, and the helpers the
//! probers' checks share (reserved query keys, query keywords, PDU length). Beside it:
//! `duration` (durations as Prometheus writes them), `tls` (the `tls` blocks and the loading of
//! their files), `dicom` (the `dicom` block every module has) and `values` (a target, a time
//! zone). Each prober's own block, its defaults and its validation live with the prober
//! (`prober::find`, `prober::send_check::options`); they are re-exported here, so every config
//! type has one public path: `config::FindOptions`, `config::SendCheckOptions`, ...
//!
//! Parsing is strict: an unknown key, a bad duration, an invalid AE title or an unknown prober is
//! an error that names the module and the key, with the line where the YAML library gives it. A
//! config that fails here is never half-applied.

mod dicom;
mod duration;
mod tls;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::allow::{AllowList, AllowListError};
use crate::dicom::query::{self, QueryKeys};
use crate::prober::send_check::options::MAX_LOOKBACK;

pub use self::dicom::{
    DicomOptions, DicomOverrides, DEFAULT_CALLED_AET, DEFAULT_CALLING_AET, DEFAULT_MAX_PDU_LENGTH,
};
pub use self::duration::{InvalidDuration, PromDuration};
pub use self::tls::{TlsError, TlsSettings};
pub use self::values::{TargetSpec, TimeZone};
pub use crate::prober::find::{FindOptions, Level, Model};
pub use crate::prober::send_check::options::{DestinationQuery, SendCheckOptions, StudyLabel};

/// The probe timeout of a module that names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A validated module. Serialized back in the file's shape (`prober:` and its block).
#[derive(Clone, Debug, Serialize)]
#[serde(into = "ModuleFile")]
pub struct Module {
    pub prober: Prober,
    /// Upper bound of a probe's run time; the scrape timeout may shorten it.
    pub timeout: PromDuration,
    pub dicom: DicomOptions,
}

/// Which check a module runs, with that check's own options: after validation a prober never
/// re-checks what the loader guaranteed.
#[derive(Clone, Debug)]
pub enum Prober {
    Echo,
    Find(FindOptions),
    SendCheck(Box<SendCheckOptions>),
}

impl Prober {
    pub fn kind(&self) -> ProberKind {
        match self {
            Prober::Echo => ProberKind::Echo,
            Prober::Find(_) => ProberKind::Find,
            Prober::SendCheck(_) => ProberKind::SendCheck,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// A module as written in modules.yml.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ModuleFile {
    prober: ProberKind,
    #[serde(default = "default_timeout")]
    timeout: PromDuration,
    #[serde(default)]
    dicom: DicomOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    find: Option<FindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    send_check: Option<SendCheckOptions>,
}

impl From<Module> for ModuleFile {
    fn from(module: Module) -> ModuleFile {
        let (find, send_check) = match module.prober {
            Prober::Echo => (None, None),
            Prober::Find(find) => (Some(find), None),
            Prober::SendCheck(check) => (None, Some(*check)),
        };
        ModuleFile {
            prober: match (&find, &send_check) {
                (Some(_), _) => ProberKind::Find,
                (_, Some(_)) => ProberKind::SendCheck,
                _ => ProberKind::Echo,
            },
            timeout: module.timeout,
            dicom: module.dicom,
            find,
            send_check,
        }
    }
}

impl Module {
    /// The send_check options, for a send_check module.
    pub fn send_check(&self) -> Option<&SendCheckOptions> {
        match &self.prober {
            Prober::SendCheck(check) => Some(check),
            _ => None,
        }
    }
}

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
fn default_timeout() -> PromDuration {
    PromDuration(DEFAULT_TIMEOUT)
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
    Invalid { path: String, source: ParseError },
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
    #[error("{}", yaml_message(.path.as_deref(), .source))]
    Yaml {
        path: Option<String>,
        source: yaml_serde::Error,
    },
    #[error("allowed_targets: {0}")]
    AllowedTargets(#[from] AllowListError),
    #[error("modules.{name}.{source}")]
    Module { name: String, source: ModuleError },
}

/// The YAML library's message under our key path. Its message may start with its own path,
/// which stops at the enclosing mapping where ours names the key: ours replaces it.
fn yaml_message(path: Option<&str>, error: &yaml_serde::Error) -> String {
    let inner = error.to_string();
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
    #[error(
        "send_check.lookback: must be greater than 0 and at most {}",
        PromDuration(MAX_LOOKBACK)
    )]
    Lookback,
    #[error("send_check.grace: must be shorter than lookback")]
    Grace,
    #[error("{0}.max_matches: must be greater than 0")]
    MaxMatches(ProberKind),
    #[error("send_check.labels: {} is listed twice", .0.name())]
    DuplicateLabel(StudyLabel),
    /// A `tls` block whose files cannot be read or do not go together; `block` is `dicom` or
    /// `send_check.destination_dicom`.
    #[error("{block}.tls.{}{source}", .source.key())]
    Tls {
        block: &'static str,
        source: TlsError,
    },
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
            source,
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
            let path = e.path().to_string();
            ParseError::Yaml {
                path: (path != "." && !path.contains('?')).then_some(path),
                source: e.into_inner(),
            }
        })?;
        let allow = AllowList::parse(&file.allowed_targets)?;
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
                .map_err(|source| ParseError::Module {
                    name: name.clone(),
                    source,
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

    /// What is valid but likely wrong, one line each, for `--config.check`, start-up and
    /// reload to log: a send_check module without `timezone` while the process runs in UTC
    /// (as containers do) reads every StudyDate/StudyTime as UTC, so sites east of UTC get
    /// their alerts hours late and sites west of it get false alarms.
    pub fn warnings(&self) -> Vec<String> {
        let process_in_utc = chrono::Local::now().offset().local_minus_utc() == 0;
        self.modules
            .iter()
            .filter(|(_, m)| m.send_check().is_some_and(|c| c.timezone.is_none()))
            .filter(|_| process_in_utc)
            .map(|(name, _)| {
                format!(
                    "modules.{name}.send_check.timezone is not set and the exporter's zone is UTC: \
                     StudyDate/StudyTime without TimezoneOffsetFromUTC are read as UTC; set \
                     timezone (e.g. Europe/Moscow) or the TZ environment variable"
                )
            })
            .collect()
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

impl ModuleFile {
    /// Checks the module and closes it into a [`Module`]: each prober has its own block, and a
    /// block for another prober is a mistake worth naming.
    fn validated(self) -> Result<Module, ModuleError> {
        if self.timeout.0.is_zero() {
            return Err(ModuleError::ZeroTimeout);
        }
        check_pdu("dicom", self.dicom.max_pdu_length)?;
        let prober = match (self.prober, self.find, self.send_check) {
            (ProberKind::Echo, None, None) => Prober::Echo,
            (ProberKind::Find, find, None) => Prober::Find(find.unwrap_or_default()),
            (ProberKind::SendCheck, None, Some(check)) => Prober::SendCheck(Box::new(check)),
            (ProberKind::SendCheck, _, None) => return Err(ModuleError::MissingSendCheck),
            (prober, Some(_), _) => {
                return Err(ModuleError::OtherProbersBlock {
                    block: ProberKind::Find,
                    prober,
                })
            }
            (prober, _, Some(_)) => {
                return Err(ModuleError::OtherProbersBlock {
                    block: ProberKind::SendCheck,
                    prober,
                })
            }
        };
        // Each prober checks its own block.
        match &prober {
            Prober::Echo => {}
            Prober::Find(find) => find.validate()?,
            Prober::SendCheck(check) => check.validate()?,
        }
        Ok(Module {
            prober,
            timeout: self.timeout,
            dicom: self.dicom,
        })
    }
}

impl Module {
    /// Builds the module's TLS client configs, so unreadable files fail the load; the error
    /// names the key below the module.
    fn load_tls(&mut self, base: &Path) -> Result<(), ModuleError> {
        if let Some(tls) = &mut self.dicom.tls {
            tls.build(base).map_err(|source| ModuleError::Tls {
                block: "dicom",
                source,
            })?;
        }
        match &mut self.prober {
            Prober::Echo | Prober::Find(_) => {}
            Prober::SendCheck(check) => check.load_tls(base)?,
        }
        Ok(())
    }

    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_else(|e| format!("# cannot render module: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `err` is a YAML error at `key`.
    fn yaml_at(err: &ParseError, key: &str) -> bool {
        matches!(err, ParseError::Yaml { path: Some(path), .. } if path == key)
    }

    /// Whether `err` is module `name`'s, and what it says of the module passes `check`.
    fn in_module(err: &ParseError, name: &str, check: fn(&ModuleError) -> bool) -> bool {
        matches!(err, ParseError::Module { name: n, source } if n == name && check(source))
    }

    /// Each file under `tests/testdata/config/` is one way a config can be wrong; the error
    /// must say what is wrong and where, in its variant and in the line the operator reads.
    #[test]
    fn bad_configs_are_refused_with_a_useful_error() {
        use ModuleError as M;
        type Check = fn(&ParseError) -> bool;
        let cases: [(&str, &str, Check); 23] = [
            ("unknown_top_key.yml", "unknown field `modulez`", |e| {
                yaml_at(e, "modulez")
            }),
            (
                "unknown_module_key.yml",
                "modules.echo.timout: unknown field `timout`",
                |e| yaml_at(e, "modules.echo.timout"),
            ),
            (
                "unknown_dicom_key.yml",
                "modules.echo.dicom.calling_ae: unknown field `calling_ae`",
                |e| yaml_at(e, "modules.echo.dicom.calling_ae"),
            ),
            (
                "bad_duration.yml",
                "modules.echo.timeout: invalid duration \"5 seconds\"",
                |e| yaml_at(e, "modules.echo.timeout"),
            ),
            (
                "zero_timeout.yml",
                "modules.echo.timeout: must be greater than 0",
                |e| in_module(e, "echo", |m| matches!(m, M::ZeroTimeout)),
            ),
            (
                "bad_calling_aet.yml",
                "modules.echo.dicom.calling_aet: AE title is 22 characters long; at most 16",
                |e| yaml_at(e, "modules.echo.dicom.calling_aet"),
            ),
            (
                "backslash_called_aet.yml",
                "modules.echo.dicom.called_aet: AE title contains a backslash",
                |e| yaml_at(e, "modules.echo.dicom.called_aet"),
            ),
            (
                "unknown_prober.yml",
                "modules.echo.prober: unknown variant `ping`",
                |e| yaml_at(e, "modules.echo.prober"),
            ),
            (
                "missing_prober.yml",
                "modules.echo: missing field `prober`",
                |e| yaml_at(e, "modules.echo"),
            ),
            (
                "bad_pdu.yml",
                "modules.echo.dicom.max_pdu_length: 100 is outside",
                |e| {
                    in_module(e, "echo", |m| {
                        matches!(
                            m,
                            M::PduLength {
                                block: "dicom",
                                length: 100
                            }
                        )
                    })
                },
            ),
            ("not_yaml.yml", "line", |e| {
                matches!(e, ParseError::Yaml { path: None, .. })
            }),
            ("empty.yml", "modules: no module is defined", |e| {
                matches!(e, ParseError::NoModules)
            }),
            ("no_modules.yml", "modules: no module is defined", |e| {
                matches!(e, ParseError::NoModules)
            }),
            ("empty_modules.yml", "modules: no module is defined", |e| {
                matches!(e, ParseError::NoModules)
            }),
            (
                "huge_lookback.yml",
                "modules.check.send_check.lookback: must be greater than 0 and at most",
                |e| in_module(e, "check", |m| matches!(m, M::Lookback)),
            ),
            (
                "reserved_key.yml",
                "modules.check.send_check.query.StudyDate: not allowed here",
                |e| {
                    in_module(e, "check", |m| {
                        matches!(m, M::ReservedKey { prober: ProberKind::SendCheck, key, .. }
                            if key == "StudyDate")
                    })
                },
            ),
            (
                "grace_too_long.yml",
                "modules.check.send_check.grace: must be shorter than lookback",
                |e| in_module(e, "check", |m| matches!(m, M::Grace)),
            ),
            (
                "send_check_no_destination.yml",
                "modules.check.send_check: required by prober send_check",
                |e| in_module(e, "check", |m| matches!(m, M::MissingSendCheck)),
            ),
            (
                "block_for_other_prober.yml",
                "modules.e.find: only for prober find, not echo",
                |e| {
                    in_module(e, "e", |m| {
                        matches!(
                            m,
                            M::OtherProbersBlock {
                                block: ProberKind::Find,
                                prober: ProberKind::Echo
                            }
                        )
                    })
                },
            ),
            (
                "bad_keyword.yml",
                "modules.f.find.query: \"NoSuchKeyword\" is not a DICOM keyword",
                |e| {
                    in_module(e, "f", |m| {
                        matches!(
                            m,
                            M::Query {
                                prober: ProberKind::Find,
                                ..
                            }
                        )
                    })
                },
            ),
            (
                "bad_allowed_target.yml",
                "allowed_targets: \"10.0.0.0/33\": prefix length",
                |e| {
                    matches!(e, ParseError::AllowedTargets(AllowListError::PrefixLength { entry, max: 32 })
                        if entry == "10.0.0.0/33")
                },
            ),
            (
                "bad_destination.yml",
                "modules.check.send_check.destination: invalid target",
                |e| yaml_at(e, "modules.check.send_check.destination"),
            ),
            (
                "bad_label.yml",
                "modules.check.send_check.labels[1]: unknown variant `shoe_size`",
                |e| yaml_at(e, "modules.check.send_check.labels[1]"),
            ),
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/config");
        for (file, want, expected) in cases {
            let path = dir.join(file);
            let err = Config::load(&path).expect_err(file);
            let ConfigError::Invalid {
                path: named,
                source,
            } = &err
            else {
                panic!("{file}: {err:?} should be an invalid config");
            };
            assert_eq!(*named, path.display().to_string(), "{file}");
            assert!(expected(source), "{file}: unexpected error {source:?}");
            let err = err.to_string();
            assert!(
                err.contains(want),
                "{file}: error {err:?} should contain {want:?}"
            );
            assert!(
                !err.contains('\n'),
                "{file}: error should be one line: {err:?}"
            );
        }
    }

    /// Mistakes no file above shows, each refused with its variant and the exact line the
    /// operator reads.
    #[test]
    fn invalid_modules_name_the_module_and_the_key() {
        use ModuleError as M;
        type Check = fn(&ParseError) -> bool;
        let module = |body: &str| format!("modules:\n  m:\n{body}");
        let send_check = |extra: &str| {
            module(&format!(
                "    prober: send_check\n    send_check:\n      destination: A@127.0.0.1:104\n{extra}"
            ))
        };
        let cases: [(String, &str, Check); 10] = [
            (
                String::new(),
                "modules: no module is defined; a config needs at least one",
                |e| matches!(e, ParseError::NoModules),
            ),
            (
                "modules:\n  '':\n    prober: echo\n".into(),
                "modules: a module has an empty name",
                |e| matches!(e, ParseError::EmptyModuleName),
            ),
            (
                module("    prober: find\n    find: {model: worklist, level: STUDY}\n"),
                "modules.m.find.level: a worklist query has no level",
                |e| in_module(e, "m", |m| matches!(m, M::WorklistLevel)),
            ),
            (
                module("    prober: find\n    find:\n      query: {QueryRetrieveLevel: STUDY}\n"),
                "modules.m.find.query.QueryRetrieveLevel: not allowed here: set by find.level",
                |e| {
                    in_module(e, "m", |m| {
                        matches!(m, M::ReservedKey { prober: ProberKind::Find, key, .. }
                            if key == "QueryRetrieveLevel")
                    })
                },
            ),
            (
                module("    prober: find\n    find: {max_matches: 0}\n"),
                "modules.m.find.max_matches: must be greater than 0",
                |e| in_module(e, "m", |m| matches!(m, M::MaxMatches(ProberKind::Find))),
            ),
            (
                send_check("      max_matches: 0\n"),
                "modules.m.send_check.max_matches: must be greater than 0",
                |e| in_module(e, "m", |m| matches!(m, M::MaxMatches(ProberKind::SendCheck))),
            ),
            (
                send_check("      labels: [study_id, modality, study_id]\n"),
                "modules.m.send_check.labels: study_id is listed twice",
                |e| {
                    in_module(e, "m", |m| {
                        matches!(m, M::DuplicateLabel(StudyLabel::StudyId))
                    })
                },
            ),
            (
                send_check("      destination_dicom: {max_pdu_length: 10}\n"),
                "modules.m.send_check.destination_dicom.max_pdu_length: 10 is outside \
                 4096..=1048576",
                |e| {
                    in_module(e, "m", |m| {
                        matches!(
                            m,
                            M::PduLength {
                                block: "send_check.destination_dicom",
                                length: 10
                            }
                        )
                    })
                },
            ),
            (
                module("    prober: echo\n    dicom:\n      tls: {}\n"),
                "modules.m.dicom.tls.ca_file: required unless insecure_skip_verify is true",
                |e| {
                    in_module(e, "m", |m| {
                        matches!(
                            m,
                            M::Tls {
                                block: "dicom",
                                source: TlsError::Client(_)
                            }
                        )
                    })
                },
            ),
            (
                send_check(
                    "      destination_dicom:\n        tls: {insecure_skip_verify: true, server_name: 'a b'}\n",
                ),
                "modules.m.send_check.destination_dicom.tls.server_name: invalid TLS server name \
                 \"a b\"",
                |e| {
                    in_module(e, "m", |m| {
                        matches!(
                            m,
                            M::Tls {
                                block: "send_check.destination_dicom",
                                source: TlsError::ServerName(_)
                            }
                        )
                    })
                },
            ),
        ];
        for (text, want, expected) in cases {
            let err = Config::parse(&text).expect_err(&text);
            assert!(expected(&err), "{text}: unexpected error {err:?}");
            let err = err.to_string();
            assert!(
                err.starts_with(want),
                "{text}: {err:?} should start with {want:?}"
            );
            assert!(
                !err.contains('\n'),
                "{text}: error should be one line: {err:?}"
            );
        }
    }

    #[test]
    fn shipped_config_is_valid_and_defaults_apply() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("modules.yml");
        let config = Config::load(&path).expect("shipped modules.yml loads");
        let echo = &config.modules["echo"];
        assert_eq!(echo.prober.kind(), ProberKind::Echo);
        let Prober::SendCheck(check) = &config.modules["send_check"].prober else {
            panic!("the shipped send_check module is a send_check");
        };
        assert_eq!(check.max_confirmations, 200);

        let config = Config::parse("modules:\n  m:\n    prober: echo\n").unwrap();
        let m = &config.modules["m"];
        assert_eq!(m.timeout.0, DEFAULT_TIMEOUT);
        assert_eq!(m.dicom.calling_aet.as_str(), DEFAULT_CALLING_AET);
        assert_eq!(m.dicom.called_aet.as_str(), DEFAULT_CALLED_AET);
        assert_eq!(m.dicom.max_pdu_length, DEFAULT_MAX_PDU_LENGTH);

        // A find module without a find block gets the same defaults as one with an empty block.
        for text in ["    prober: find\n", "    prober: find\n    find: {}\n"] {
            let config = Config::parse(&format!("modules:\n  m:\n{text}")).unwrap();
            let Prober::Find(find) = &config.modules["m"].prober else {
                panic!("a find module is a find");
            };
            assert_eq!(find.max_matches, 100_000);
            assert_eq!(find.model, Model::StudyRoot);
        }
    }

    /// `/config` shows a module in the file's shape, and that text loads back the same.
    #[test]
    fn a_config_renders_back_to_the_same_modules() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("modules.yml");
        let config = Config::load(&path).expect("shipped modules.yml loads");
        let yaml = config.to_yaml();
        let again = Config::parse(&yaml).expect("rendered config loads");
        assert_eq!(again.to_yaml(), yaml);
        for (name, module) in &config.modules {
            assert_eq!(
                again.modules[name].prober.kind(),
                module.prober.kind(),
                "{name}"
            );
        }
    }
}
