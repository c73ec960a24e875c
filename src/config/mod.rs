//! modules.yml: the types, their defaults and their validation, in one place.
//!
//! Parsing is strict: an unknown key, a bad duration, an invalid AE title or an unknown prober is
//! an error that names the module and the key, with the line where the YAML library gives it. A
//! config that fails here is never half-applied.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::allow::{AllowList, AllowListError};
use crate::dicom::find::InformationModel;
use crate::dicom::query::{self, QueryKeys};
use crate::dicom::tls::{self, ClientFiles};
use crate::dicom::TlsOptions;
use crate::target::{AeTitle, Host, Target};

/// The probe timeout of a module that names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The calling AE title of a module that names none.
pub const DEFAULT_CALLING_AET: &str = "PACS_EXPORTER";
/// The called AE title for targets without `AET@`, unless the module names one.
pub const DEFAULT_CALLED_AET: &str = "ANY-SCP";
/// The largest PDU we tell peers we accept, unless the module says otherwise.
pub const DEFAULT_MAX_PDU_LENGTH: u32 = 16_384;

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

/// The `find` prober: one C-FIND.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FindOptions {
    /// `study_root` (default), `patient_root` or `worklist`.
    #[serde(default)]
    pub model: Model,
    /// QueryRetrieveLevel: PATIENT, STUDY, SERIES or IMAGE. Default STUDY for study_root,
    /// PATIENT for patient_root; not sent for worklist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Matching and return keys by DICOM keyword; `today` in a date means the probe's day.
    #[serde(default)]
    pub query: QueryKeys,
    /// How `today` is read; default: the exporter's local zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZone>,
    /// Most matches the probe reads before it fails `too_many_matches` (a bound on the time a
    /// peer can keep it reading; matches are counted, not kept).
    #[serde(default = "default_max_matches")]
    pub max_matches: usize,
}

impl Default for FindOptions {
    fn default() -> Self {
        FindOptions {
            model: Model::default(),
            level: None,
            query: QueryKeys::default(),
            timezone: None,
            max_matches: default_max_matches(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    #[default]
    StudyRoot,
    PatientRoot,
    Worklist,
}

impl Model {
    pub fn information_model(self) -> InformationModel {
        match self {
            Model::StudyRoot => InformationModel::StudyRoot,
            Model::PatientRoot => InformationModel::PatientRoot,
            Model::Worklist => InformationModel::Worklist,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

/// The `send_check` prober: did the source's recent studies reach the destination, whole?
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SendCheckOptions {
    /// The destination PACS, `AET@host:port`; the probe's target is the source.
    pub destination: TargetSpec,
    /// Connection settings for the destination where they differ from the module's `dicom`.
    #[serde(default, skip_serializing_if = "DicomOverrides::is_empty")]
    pub destination_dicom: DicomOverrides,
    /// Studies whose StudyDate/StudyTime lie in [now − lookback, now] are checked.
    #[serde(default = "default_lookback")]
    pub lookback: PromDuration,
    /// Studies younger than this are pending, not judged yet.
    #[serde(default = "default_grace")]
    pub grace: PromDuration,
    /// How StudyDate/StudyTime are read; default: the exporter's local zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZone>,
    /// Extra C-FIND keys narrowing the source query (e.g. ModalitiesInStudy).
    #[serde(default)]
    pub query: QueryKeys,
    /// Also flag studies that arrived with fewer instances.
    #[serde(default = "default_true")]
    pub compare_instances: bool,
    #[serde(default)]
    pub destination_query: DestinationQuery,
    /// Cap on the per-study series.
    #[serde(default = "default_max_listed")]
    pub max_listed_studies: usize,
    /// Opt-in identifying labels on the per-study series (patient data: see the README).
    #[serde(default)]
    pub labels: Vec<StudyLabel>,
    /// Most matches one side may return before the probe gives up (memory bound).
    #[serde(default = "default_max_matches")]
    pub max_matches: usize,
    /// Most single-UID queries `auto` sends to confirm studies one by one (when the
    /// destination's UID list matching is unproven or broken); past it the probe fails.
    #[serde(default = "default_max_confirmations")]
    pub max_confirmations: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationQuery {
    /// `date_range`, then every study it did not find confirmed by UID queries whose
    /// answers prove themselves (see the README's send_check section).
    #[default]
    Auto,
    DateRange,
    UidList,
    PerStudy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyLabel {
    PatientName,
    PatientId,
    StudyId,
    AccessionNumber,
    Modality,
    StudyDate,
}

impl StudyLabel {
    pub fn name(self) -> &'static str {
        match self {
            StudyLabel::PatientName => "patient_name",
            StudyLabel::PatientId => "patient_id",
            StudyLabel::StudyId => "study_id",
            StudyLabel::AccessionNumber => "accession_number",
            StudyLabel::Modality => "modality",
            StudyLabel::StudyDate => "study_date",
        }
    }
}

/// Per-peer overrides of [`DicomOptions`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DicomOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calling_aet: Option<AeTitle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pdu_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

impl DicomOverrides {
    fn is_empty(&self) -> bool {
        self.calling_aet.is_none() && self.max_pdu_length.is_none() && self.tls.is_none()
    }

    /// The module's options with these overrides applied.
    pub fn apply(&self, base: &DicomOptions) -> DicomOptions {
        DicomOptions {
            calling_aet: self
                .calling_aet
                .clone()
                .unwrap_or_else(|| base.calling_aet.clone()),
            called_aet: base.called_aet.clone(),
            max_pdu_length: self.max_pdu_length.unwrap_or(base.max_pdu_length),
            // The module's TLS settings name the source's certificate, not the destination's.
            tls: self.tls.clone().or_else(|| {
                base.tls.clone().map(|tls| TlsSettings {
                    server_name: None,
                    ..tls
                })
            }),
        }
    }
}

/// A target written in the config (`AET@host:port`), parsed when the config is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec(pub Target);

impl<'de> Deserialize<'de> for TargetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Target::parse(&text)
            .map(TargetSpec)
            .map_err(|e| serde::de::Error::custom(format!("invalid target {text:?}: {e}")))
    }
}

impl Serialize for TargetSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// An IANA time zone name (`Europe/Moscow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| serde::de::Error::custom(format!("unknown time zone {text:?}")))
    }
}

impl Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

fn default_lookback() -> PromDuration {
    PromDuration(Duration::from_secs(24 * 3600))
}

fn default_grace() -> PromDuration {
    PromDuration(Duration::from_secs(600))
}

fn default_true() -> bool {
    true
}

fn default_max_listed() -> usize {
    100
}

fn default_max_matches() -> usize {
    100_000
}

fn default_max_confirmations() -> usize {
    200
}

/// How the exporter presents itself to a PACS.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DicomOptions {
    /// Our AE title; many PACS only accept calling AE titles they know.
    #[serde(default = "default_calling_aet")]
    pub calling_aet: AeTitle,
    /// The called AE title for targets written without `AET@`.
    #[serde(default = "default_called_aet")]
    pub called_aet: AeTitle,
    /// The largest PDU we accept from the peer (bytes, 4096–1048576).
    #[serde(default = "default_max_pdu_length")]
    pub max_pdu_length: u32,
    /// DICOM over TLS, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

/// `dicom.tls`: DICOM over TLS to the PACS.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// CA certificates (PEM) the PACS' certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Our client certificate and key (PEM), for PACS that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the PACS' certificate must carry; default: the target's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any certificate (still encrypted). For testing only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The rustls config built from the above when the config is loaded.
    #[serde(skip)]
    pub client: Option<Arc<rustls::ClientConfig>>,
}

/// Why a `tls` block cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The files or choices make no TLS client; the text names the key (`ca_file: ...`).
    #[error("{0}")]
    Client(String),
    /// `server_name`, or the target's host when it is not set, is not a name TLS can verify.
    #[error("{0}")]
    ServerName(String),
    #[error("TLS settings were not loaded")]
    NotLoaded,
}

impl TlsError {
    /// The key below `tls` that the message does not name itself.
    fn key(&self) -> &'static str {
        match self {
            TlsError::ServerName(_) => "server_name: ",
            TlsError::Client(_) | TlsError::NotLoaded => "",
        }
    }
}

impl TlsSettings {
    /// Reads the files (relative to `base`) into a rustls client config.
    fn build(&mut self, base: &Path) -> Result<(), TlsError> {
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let (ca, cert, key) = (
            resolve(&self.ca_file),
            resolve(&self.cert_file),
            resolve(&self.key_file),
        );
        self.client = Some(
            tls::client_config(&ClientFiles {
                ca_file: ca.as_deref(),
                cert_file: cert.as_deref(),
                key_file: key.as_deref(),
                insecure_skip_verify: self.insecure_skip_verify,
            })
            .map_err(TlsError::Client)?,
        );
        if let Some(name) = &self.server_name {
            tls::server_name(name).map_err(TlsError::ServerName)?;
        }
        Ok(())
    }

    /// What an association to `host` needs.
    pub fn options(&self, host: &Host) -> Result<TlsOptions, TlsError> {
        let config = self.client.clone().ok_or(TlsError::NotLoaded)?;
        let name = match (&self.server_name, host) {
            (Some(name), _) => name.clone(),
            (None, Host::Ip(ip)) => ip.to_string(),
            (None, Host::Name(name)) => name.clone(),
        };
        Ok(TlsOptions {
            config,
            server_name: tls::server_name(&name).map_err(TlsError::ServerName)?,
        })
    }
}

impl Default for DicomOptions {
    fn default() -> Self {
        DicomOptions {
            calling_aet: default_calling_aet(),
            called_aet: default_called_aet(),
            max_pdu_length: DEFAULT_MAX_PDU_LENGTH,
            tls: None,
        }
    }
}

fn default_timeout() -> PromDuration {
    PromDuration(DEFAULT_TIMEOUT)
}

fn default_calling_aet() -> AeTitle {
    AeTitle::new(DEFAULT_CALLING_AET).unwrap_or_else(|_| unreachable!("constant is a valid title"))
}

fn default_called_aet() -> AeTitle {
    AeTitle::new(DEFAULT_CALLED_AET).unwrap_or_else(|_| unreachable!("constant is a valid title"))
}

fn default_max_pdu_length() -> u32 {
    DEFAULT_MAX_PDU_LENGTH
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
    Query { prober: ProberKind, reason: String },
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

/// The longest lookback: a transfer check over more than a year of studies is a migration,
/// not monitoring.
const MAX_LOOKBACK: Duration = Duration::from_secs(366 * 86_400);

/// Keys a prober sets itself may not be given in its query.
fn reserved_keys(
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
fn check_pdu(block: &'static str, length: u32) -> Result<(), ModuleError> {
    if (4096..=1_048_576).contains(&length) {
        Ok(())
    } else {
        Err(ModuleError::PduLength { block, length })
    }
}

/// Checks a query's keywords.
fn check_query(prober: ProberKind, keys: &QueryKeys) -> Result<(), ModuleError> {
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
        if let Prober::Find(find) = &prober {
            check_query(ProberKind::Find, &find.query)?;
            reserved_keys(
                ProberKind::Find,
                &find.query,
                &["QueryRetrieveLevel"],
                "set by find.level",
            )?;
            if find.model == Model::Worklist && find.level.is_some() {
                return Err(ModuleError::WorklistLevel);
            }
            if find.max_matches == 0 {
                return Err(ModuleError::MaxMatches(ProberKind::Find));
            }
        }
        if let Prober::SendCheck(check) = &prober {
            check_query(ProberKind::SendCheck, &check.query)?;
            reserved_keys(
                ProberKind::SendCheck,
                &check.query,
                &[
                    "QueryRetrieveLevel",
                    "StudyDate",
                    "StudyTime",
                    "StudyInstanceUID",
                    "NumberOfStudyRelatedInstances",
                    "SpecificCharacterSet",
                    "TimezoneOffsetFromUTC",
                ],
                "the check sets it (the window is lookback)",
            )?;
            if let Some(pdu) = check.destination_dicom.max_pdu_length {
                check_pdu("send_check.destination_dicom", pdu)?;
            }
            if check.lookback.0.is_zero() || check.lookback.0 > MAX_LOOKBACK {
                return Err(ModuleError::Lookback);
            }
            if check.grace >= check.lookback {
                return Err(ModuleError::Grace);
            }
            if check.max_matches == 0 {
                return Err(ModuleError::MaxMatches(ProberKind::SendCheck));
            }
            let mut seen = Vec::with_capacity(check.labels.len());
            for label in &check.labels {
                if seen.contains(label) {
                    return Err(ModuleError::DuplicateLabel(*label));
                }
                seen.push(*label);
            }
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
        if let Prober::SendCheck(check) = &mut self.prober {
            if let Some(tls) = &mut check.destination_dicom.tls {
                tls.build(base).map_err(|source| ModuleError::Tls {
                    block: "send_check.destination_dicom",
                    source,
                })?;
            }
        }
        Ok(())
    }

    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_else(|e| format!("# cannot render module: {e}\n"))
    }
}

/// A duration written as Prometheus writes them: `500ms`, `10s`, `1m30s`, `24h`, `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PromDuration(pub Duration);

/// Text that is not a duration as Prometheus writes them (or one too long to hold).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected e.g. 500ms, 10s, 1m30s, 24h")]
pub struct InvalidDuration(pub String);

impl PromDuration {
    pub fn parse(text: &str) -> Result<PromDuration, InvalidDuration> {
        // Largest first; each unit may appear once, in this order, as in Prometheus.
        const UNITS: [(&str, u64); 7] = [
            ("y", 31_536_000_000),
            ("w", 604_800_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let bad = || InvalidDuration(text.to_string());
        if text == "0" {
            return Ok(PromDuration(Duration::ZERO));
        }
        if text.is_empty() {
            return Err(bad());
        }
        let mut rest = text;
        let mut total: u64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let letters = rest[digits..]
                .bytes()
                .take_while(u8::is_ascii_alphabetic)
                .count();
            if digits == 0 || letters == 0 {
                return Err(bad());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = &rest[digits..digits + letters];
            let index = UNITS[next_unit..]
                .iter()
                .position(|(name, _)| *name == unit)
                .ok_or_else(bad)?
                + next_unit;
            next_unit = index + 1;
            total = value
                .checked_mul(UNITS[index].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            rest = &rest[digits + letters..];
        }
        Ok(PromDuration(Duration::from_millis(total)))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("y", 31_536_000_000u128),
            ("w", 604_800_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PromDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_prometheus() {
        let ok = [
            ("0", 0),
            ("500ms", 500),
            ("10s", 10_000),
            ("1m30s", 90_000),
            ("24h", 86_400_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1h0m5s10ms", 3_605_010),
        ];
        for (text, ms) in ok {
            assert_eq!(
                PromDuration::parse(text),
                Ok(PromDuration(Duration::from_millis(ms))),
                "{text}"
            );
        }
        for text in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10 s",
            "5s1m",
            "1s1s",
            "10sec",
            "1x",
            "99999999999999999999y",
        ] {
            assert_eq!(
                PromDuration::parse(text),
                Err(InvalidDuration(text.to_string())),
                "{text:?} should be refused"
            );
        }
        for text in ["500ms", "10s", "1m30s", "1d", "1h5s10ms"] {
            assert_eq!(PromDuration::parse(text).unwrap().to_string(), text);
        }
    }

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
