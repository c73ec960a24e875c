//! A module as the probers run it: the [`Prober`] with that prober's own options, the
//! timeout and the `dicom` block; and a module as modules.yml writes it ([`ModuleFile`]),
//! checked into one. A prober's options, defaults and checks live in its own file; adding one
//! here takes its `Prober` variant, its block in `ModuleFile`, and one arm in each of this
//! file's matches (plus its `ProberKind` and the arm of `prober::run` that calls it).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::{self, check_pdu, ModuleError, ProberKind};
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

    /// Each prober checks its own block.
    fn validate(&self) -> Result<(), ModuleError> {
        match self {
            Prober::Echo => Ok(()),
            Prober::Find(find) => find.validate(),
            Prober::SendCheck(check) => check.validate(),
        }
    }

    /// Builds the TLS client configs a prober's own block names.
    fn load_tls(&mut self, base: &Path) -> Result<(), ModuleError> {
        match self {
            Prober::Echo | Prober::Find(_) => Ok(()),
            Prober::SendCheck(check) => check.load_tls(base),
        }
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
        let mut file = ModuleFile {
            prober: module.prober.kind(),
            timeout: module.timeout,
            dicom: module.dicom,
            find: None,
            send_check: None,
        };
        match module.prober {
            Prober::Echo => {}
            Prober::Find(find) => file.find = Some(find),
            Prober::SendCheck(check) => file.send_check = Some(*check),
        }
        file
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

    /// Whether a request for this module names the destination (a send_check module with
    /// `destination: from_request`, a route); every other module refuses one.
    pub fn takes_destination(&self) -> bool {
        self.send_check()
            .is_some_and(|check| check.destination.is_from_request())
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
        // Named before any other prober's block: what a send_check module lacks is its own.
        if self.prober == ProberKind::SendCheck && self.send_check.is_none() {
            return Err(ModuleError::MissingSendCheck);
        }
        let blocks = [
            self.find.as_ref().map(|_| ProberKind::Find),
            self.send_check.as_ref().map(|_| ProberKind::SendCheck),
        ];
        if let Some(block) = blocks.into_iter().flatten().find(|b| *b != self.prober) {
            return Err(ModuleError::OtherProbersBlock {
                block,
                prober: self.prober,
            });
        }
        let prober = match self.prober {
            ProberKind::Echo => Prober::Echo,
            ProberKind::Find => Prober::Find(self.find.unwrap_or_default()),
            ProberKind::SendCheck => {
                let check = self.send_check.ok_or(ModuleError::MissingSendCheck)?;
                Prober::SendCheck(Box::new(check))
            }
        };
        prober.validate()?;
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
        checks::load_tls(&mut self.dicom.tls, base, "dicom")?;
        self.prober.load_tls(base)
    }

    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_else(|e| format!("# cannot render module: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(yaml: &str) -> Result<Module, ModuleError> {
        let file: ModuleFile = yaml_serde::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        file.validated()
    }

    /// Which block a module has decides the error, whatever else it has: a send_check module
    /// without its own block is told so first, then any other prober's block is named.
    #[test]
    fn each_prober_takes_its_own_block_only() {
        let check = "send_check: {destination: A@127.0.0.1:104}";
        let find = "find: {model: study_root}";
        let other = |block, prober| Err(ModuleError::OtherProbersBlock { block, prober });
        let cases = [
            (
                format!("prober: send_check\n{find}"),
                Err(ModuleError::MissingSendCheck),
            ),
            (
                format!("prober: send_check\n{find}\n{check}"),
                other(ProberKind::Find, ProberKind::SendCheck),
            ),
            (
                format!("prober: find\n{check}"),
                other(ProberKind::SendCheck, ProberKind::Find),
            ),
            (
                format!("prober: echo\n{check}"),
                other(ProberKind::SendCheck, ProberKind::Echo),
            ),
            (
                format!("prober: echo\n{find}"),
                other(ProberKind::Find, ProberKind::Echo),
            ),
            ("prober: echo".to_string(), Ok(ProberKind::Echo)),
            ("prober: find".to_string(), Ok(ProberKind::Find)),
            (format!("prober: find\n{find}"), Ok(ProberKind::Find)),
            (
                format!("prober: send_check\n{check}"),
                Ok(ProberKind::SendCheck),
            ),
        ];
        for (yaml, expected) in cases {
            let got = validated(&yaml).map(|module| module.prober.kind());
            assert_eq!(
                got.as_ref().map_err(ToString::to_string),
                expected.as_ref().map_err(ToString::to_string),
                "{yaml}"
            );
        }
    }

    /// A module renders back in the file's shape: its prober and its block only.
    #[test]
    fn modules_render_as_written() {
        let module =
            validated("prober: find\nfind: {model: study_root}").unwrap_or_else(|e| panic!("{e}"));
        let yaml = module.to_yaml();
        assert!(yaml.starts_with("prober: find\n"), "{yaml}");
        assert!(yaml.contains("\nfind:\n"), "{yaml}");
        assert!(!yaml.contains("send_check"), "{yaml}");
    }
}
