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

use crate::allow::AllowList;
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

/// The `find` prober: one C-FIND.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
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

impl TlsSettings {
    /// Reads the files (relative to `base`) into a rustls client config.
    fn build(&mut self, base: &Path) -> Result<(), String> {
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let (ca, cert, key) = (
            resolve(&self.ca_file),
            resolve(&self.cert_file),
            resolve(&self.key_file),
        );
        self.client = Some(tls::client_config(&ClientFiles {
            ca_file: ca.as_deref(),
            cert_file: cert.as_deref(),
            key_file: key.as_deref(),
            insecure_skip_verify: self.insecure_skip_verify,
        })?);
        if let Some(name) = &self.server_name {
            tls::server_name(name)?;
        }
        Ok(())
    }

    /// What an association to `host` needs.
    pub fn options(&self, host: &Host) -> Result<TlsOptions, String> {
        let config = self.client.clone().ok_or("TLS settings were not loaded")?;
        let name = match (&self.server_name, host) {
            (Some(name), _) => name.clone(),
            (None, Host::Ip(ip)) => ip.to_string(),
            (None, Host::Name(name)) => name.clone(),
        };
        Ok(TlsOptions {
            config,
            server_name: tls::server_name(&name)?,
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

/// A file without modules would make every probe answer 400; it is refused like a broken one.
const NO_MODULES: &str = "modules: no module is defined; a config needs at least one";

/// Why a config was refused. The text is meant for the operator: it names the file, the module
/// and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_in(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates config text; the error is one line naming the module and key.
    /// Relative file paths are read from the working directory.
    pub fn parse(text: &str) -> Result<Config, String> {
        Config::parse_in(text, Path::new("."))
    }

    /// Like [`Config::parse`], with relative file paths read from `base`.
    pub fn parse_in(text: &str, base: &Path) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Err(NO_MODULES.into());
        }
        // serde_path_to_error names the key even where the YAML library's own path stops at
        // the enclosing mapping (errors raised by our own types: durations, AE titles).
        let file: ConfigFile = serde_path_to_error::deserialize(
            yaml_serde::Deserializer::from_str(text),
        )
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // The inner error may start with its own, shorter path; keep ours only.
            let inner = match inner.split_once(": ") {
                Some((prefix, rest)) if path.starts_with(prefix) && !prefix.contains(' ') => {
                    rest.to_string()
                }
                _ => inner,
            };
            if path == "." || path.contains('?') {
                inner
            } else {
                format!("{path}: {inner}")
            }
        })?;
        let allow =
            AllowList::parse(&file.allowed_targets).map_err(|e| format!("allowed_targets: {e}"))?;
        if file.modules.is_empty() {
            return Err(NO_MODULES.into());
        }
        let mut modules = BTreeMap::new();
        for (name, module) in file.modules {
            if name.is_empty() {
                return Err("modules: a module has an empty name".into());
            }
            let mut module = module.validated(&name)?;
            module
                .load_tls(base)
                .map_err(|e| format!("modules.{name}.{e}"))?;
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
fn reserved_keys(keys: &QueryKeys, reserved: &[&str], why: &str) -> Result<(), String> {
    match keys.keys().find(|k| reserved.contains(&k.as_str())) {
        Some(key) => Err(format!("{key}: not allowed here: {why}")),
        None => Ok(()),
    }
}

fn check_pdu(path: &str, pdu: u32) -> Result<(), String> {
    if (4096..=1_048_576).contains(&pdu) {
        Ok(())
    } else {
        Err(format!(
            "{path}.max_pdu_length: {pdu} is outside 4096..=1048576"
        ))
    }
}

impl ModuleFile {
    /// Checks the module and closes it into a [`Module`]: each prober has its own block, and a
    /// block for another prober is a mistake worth naming.
    fn validated(self, name: &str) -> Result<Module, String> {
        let path = format!("modules.{name}");
        if self.timeout.0.is_zero() {
            return Err(format!("{path}.timeout: must be greater than 0"));
        }
        check_pdu(&format!("{path}.dicom"), self.dicom.max_pdu_length)?;
        let prober = match (self.prober, self.find, self.send_check) {
            (ProberKind::Echo, None, None) => Prober::Echo,
            (ProberKind::Find, find, None) => Prober::Find(find.unwrap_or_default()),
            (ProberKind::SendCheck, None, Some(check)) => Prober::SendCheck(Box::new(check)),
            (ProberKind::SendCheck, _, None) => {
                return Err(format!(
                    "{path}.send_check: required by prober send_check (it names the destination)"
                ))
            }
            (prober, Some(_), _) => {
                return Err(format!(
                    "{path}.find: only for prober find, not {}",
                    prober.name()
                ))
            }
            (prober, _, Some(_)) => {
                return Err(format!(
                    "{path}.send_check: only for prober send_check, not {}",
                    prober.name()
                ))
            }
        };
        if let Prober::Find(find) = &prober {
            query::validate(&find.query).map_err(|e| format!("{path}.find.query: {e}"))?;
            reserved_keys(&find.query, &["QueryRetrieveLevel"], "set by find.level")
                .map_err(|e| format!("{path}.find.query.{e}"))?;
            if find.model == Model::Worklist && find.level.is_some() {
                return Err(format!("{path}.find.level: a worklist query has no level"));
            }
        }
        if let Prober::SendCheck(check) = &prober {
            query::validate(&check.query).map_err(|e| format!("{path}.send_check.query: {e}"))?;
            reserved_keys(
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
            )
            .map_err(|e| format!("{path}.send_check.query.{e}"))?;
            if let Some(pdu) = check.destination_dicom.max_pdu_length {
                check_pdu(&format!("{path}.send_check.destination_dicom"), pdu)?;
            }
            if check.lookback.0.is_zero() || check.lookback.0 > MAX_LOOKBACK {
                return Err(format!(
                    "{path}.send_check.lookback: must be greater than 0 and at most {}",
                    PromDuration(MAX_LOOKBACK)
                ));
            }
            if check.grace >= check.lookback {
                return Err(format!(
                    "{path}.send_check.grace: must be shorter than lookback"
                ));
            }
            if check.max_matches == 0 {
                return Err(format!(
                    "{path}.send_check.max_matches: must be greater than 0"
                ));
            }
            let mut labels = check.labels.clone();
            labels.sort();
            labels.dedup();
            if labels.len() != check.labels.len() {
                return Err(format!("{path}.send_check.labels: a label is listed twice"));
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
    fn load_tls(&mut self, base: &Path) -> Result<(), String> {
        if let Some(tls) = &mut self.dicom.tls {
            tls.build(base).map_err(|e| format!("dicom.tls.{e}"))?;
        }
        if let Prober::SendCheck(check) = &mut self.prober {
            if let Some(tls) = &mut check.destination_dicom.tls {
                tls.build(base)
                    .map_err(|e| format!("send_check.destination_dicom.tls.{e}"))?;
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

    /// Each file under `tests/testdata/config/` is one way a config can be wrong; the error
    /// must name what is wrong and where.
    #[test]
    fn bad_configs_are_refused_with_a_useful_error() {
        let cases = [
            ("unknown_top_key.yml", "unknown field `modulez`"),
            ("unknown_module_key.yml", "modules.echo"),
            ("unknown_module_key.yml", "unknown field `timout`"),
            ("unknown_dicom_key.yml", "modules.echo.dicom"),
            ("unknown_dicom_key.yml", "unknown field `calling_ae`"),
            ("bad_duration.yml", "modules.echo.timeout"),
            ("bad_duration.yml", "invalid duration \"5 seconds\""),
            (
                "zero_timeout.yml",
                "modules.echo.timeout: must be greater than 0",
            ),
            ("bad_calling_aet.yml", "modules.echo.dicom.calling_aet"),
            ("bad_calling_aet.yml", "at most 16"),
            ("backslash_called_aet.yml", "modules.echo.dicom.called_aet"),
            ("backslash_called_aet.yml", "backslash"),
            ("unknown_prober.yml", "modules.echo.prober"),
            ("unknown_prober.yml", "unknown variant `ping`"),
            ("missing_prober.yml", "missing field `prober`"),
            (
                "bad_pdu.yml",
                "modules.echo.dicom.max_pdu_length: 100 is outside",
            ),
            ("not_yaml.yml", "line"),
            ("empty.yml", "modules: no module is defined"),
            ("no_modules.yml", "modules: no module is defined"),
            ("empty_modules.yml", "modules: no module is defined"),
            (
                "huge_lookback.yml",
                "modules.check.send_check.lookback: must be greater than 0 and at most",
            ),
            (
                "reserved_key.yml",
                "modules.check.send_check.query.StudyDate: not allowed here",
            ),
            (
                "grace_too_long.yml",
                "modules.check.send_check.grace: must be shorter than lookback",
            ),
            (
                "send_check_no_destination.yml",
                "modules.check.send_check: required by prober send_check",
            ),
            (
                "block_for_other_prober.yml",
                "modules.e.find: only for prober find, not echo",
            ),
            (
                "bad_keyword.yml",
                "modules.f.find.query: \"NoSuchKeyword\" is not a DICOM keyword",
            ),
            (
                "bad_allowed_target.yml",
                "allowed_targets: \"10.0.0.0/33\": prefix length",
            ),
            (
                "bad_destination.yml",
                "modules.check.send_check.destination: invalid target",
            ),
            (
                "bad_label.yml",
                "modules.check.send_check.labels[1]: unknown variant `shoe_size`",
            ),
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/config");
        for (file, want) in cases {
            let err = Config::load(&dir.join(file)).expect_err(file).to_string();
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
