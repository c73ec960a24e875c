//! A module as the probers run it: the [`Prober`] with that prober's own options, the
//! timeout and the `dicom` block; and a module as modules.yml writes it ([`ModuleFile`]),
//! checked into one. Adding a prober adds its block here, one arm to each dispatch, and its
//! options with their checks in its own file.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::{check_pdu, ModuleError, ProberKind};
use super::find::FindOptions;
use super::send_check::options::SendCheckOptions;
use crate::settings::{DicomOptions, PromDuration};

/// The probe timeout of a module that names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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
pub(crate) struct ModuleFile {
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

fn default_timeout() -> PromDuration {
    PromDuration(DEFAULT_TIMEOUT)
}

impl ModuleFile {
    /// Checks the module and closes it into a [`Module`]: each prober has its own block, and a
    /// block for another prober is a mistake worth naming.
    pub(crate) fn validated(self) -> Result<Module, ModuleError> {
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
    pub(crate) fn load_tls(&mut self, base: &Path) -> Result<(), ModuleError> {
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
