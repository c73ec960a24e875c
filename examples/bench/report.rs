//! What a case reports: Markdown sections with tables and targets, the lines that say where
//! and how the figures were taken, and `BENCHMARKS.md` regenerated from them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Repeated measurements of one thing.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl FromIterator<f64> for Samples {
    fn from_iter<I: IntoIterator<Item = f64>>(values: I) -> Samples {
        Samples(values.into_iter().collect())
    }
}

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    pub fn push_duration(&mut self, value: Duration) {
        self.0.push(value.as_secs_f64());
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Every sample, in the order pushed.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.0.iter().copied()
    }

    pub fn median(&self) -> f64 {
        let values = self.sorted();
        match values.len() {
            0 => f64::NAN,
            n if !n.is_multiple_of(2) => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }

    /// The value below which a share `q` of the samples lie (nearest rank).
    pub fn quantile(&self, q: f64) -> f64 {
        let values = self.sorted();
        if values.is_empty() {
            return f64::NAN;
        }
        let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    }

    pub fn min(&self) -> f64 {
        self.quantile(0.0)
    }

    pub fn max(&self) -> f64 {
        self.quantile(1.0)
    }

    /// Seconds as "median ms (min–max)".
    pub fn ms_spread(&self) -> String {
        if self.0.len() < 2 {
            return ms(self.median());
        }
        format!(
            "{} ({}–{})",
            ms(self.median()),
            ms_bare(self.min()),
            ms_bare(self.max())
        )
    }
}

/// Seconds as milliseconds, with fewer decimals as they grow.
pub fn ms(seconds: f64) -> String {
    format!("{} ms", ms_bare(seconds))
}

fn ms_bare(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 1000.0 {
        format!("{ms:.1}")
    } else {
        thousands(ms.round() as u64)
    }
}

/// 1234567 as "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// kB (as /proc reports them) as MB.
pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1000.0)
}

/// A Markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A two-column table of names and values.
    pub fn pairs() -> Table {
        Table::new(&["", ""])
    }

    pub fn pair(&mut self, name: &str, value: impl ToString) {
        self.rows.push(vec![name.to_string(), value.to_string()]);
    }

    /// The last row, as a Markdown line (for progress output).
    pub fn last_row(&self) -> String {
        self.rows
            .last()
            .map_or(String::new(), |r| format!("| {} |", r.join(" | ")))
    }

    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        out += &line(&vec!["---".to_string(); self.header.len()]);
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

/// One of the targets, met or not, with what was measured.
pub struct Target {
    pub what: String,
    pub met: bool,
    pub measured: String,
}

/// One case's part of `BENCHMARKS.md`.
pub struct Section {
    /// The case's name on the command line; also its marker in the file.
    pub key: &'static str,
    pub title: &'static str,
    text: String,
    pub targets: Vec<Target>,
}

impl Section {
    pub fn new(key: &'static str, title: &'static str, context: &Context) -> Section {
        Section {
            key,
            title,
            text: context.lines(key),
            targets: Vec::new(),
        }
    }

    /// A paragraph of Markdown.
    pub fn say(&mut self, text: impl AsRef<str>) {
        self.text += text.as_ref().trim_end();
        self.text += "\n\n";
    }

    pub fn heading(&mut self, text: &str) {
        self.say(format!("### {text}"));
    }

    pub fn table(&mut self, table: &Table) {
        self.text += &table.markdown();
        self.text += "\n";
    }

    pub fn target(&mut self, what: &str, met: bool, measured: String) {
        self.targets.push(Target {
            what: what.to_string(),
            met,
            measured,
        });
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("## {}\n\n{}", self.title, self.text);
        if !self.targets.is_empty() {
            out += "### Targets\n\n";
            for t in &self.targets {
                let verdict = if t.met { "met" } else { "**not met**" };
                let _ = writeln!(out, "- {}: {verdict}. {}", t.what, t.measured);
            }
            out += "\n";
        }
        out
    }
}

/// Where and how the figures were taken: the lines heading every section.
pub struct Context {
    pub binary: std::path::PathBuf,
    machine: String,
    versions: String,
    revision: String,
    args: String,
}

impl Context {
    pub fn new(binary: &Path) -> Context {
        Context {
            binary: binary.to_path_buf(),
            machine: machine(),
            versions: versions(binary),
            revision: revision(),
            args: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        }
    }

    /// The lines above a section's tables. `key` is the case, for the command that
    /// regenerates that section alone.
    fn lines(&self, key: &str) -> String {
        let load = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let command = format!("cargo run --release --example bench -- {}", self.args);
        let alone = format!("cargo run --release --example bench -- {key}");
        format!(
            "Command: `{}` (this section alone: `{alone}`). Date: {}. Revision: {}.\n\
             Machine: {}; load average at the start of this case (1, 5, 15 min): {load}.\n\
             Versions: {}.\n\n",
            command.trim_end(),
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            self.revision,
            self.machine,
            self.versions,
        )
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text).trim().to_string()
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| Some(l.strip_prefix("model name")?.split_once(':')?.1.trim()))
        .unwrap_or("unknown CPU")
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: u64 = m
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()?;
            Some(format!("{:.0} GB RAM", kb as f64 / 1e6))
        })
        .unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|r| {
            r.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    format!("{cores} × {model}, {memory}, {os}; the benchmark's own processes share these cores")
}

/// The exporter's, the peers' and the compiler's versions.
fn versions(binary: &Path) -> String {
    let first = |text: String| text.lines().next().unwrap_or("").trim().to_string();
    let exporter = first(output(&binary.to_string_lossy(), &["--version"]));
    let orthanc = first(output("Orthanc", &["--version"]));
    let dcmtk = first(output("echoscu", &["--version"]));
    let rustc = first(output("rustc", &["--version"]));
    format!("`{exporter}`; `{orthanc}`; DCMTK `{dcmtk}`; `{rustc}`")
}

/// HEAD, and the source files that differ from it.
fn revision() -> String {
    let revision = output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = output(
        "git",
        &[
            "status",
            "--porcelain",
            "--",
            "src",
            "Cargo.toml",
            "Cargo.lock",
        ],
    );
    let dirty: Vec<&str> = dirty
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    if dirty.is_empty() {
        revision
    } else {
        format!(
            "{revision} with uncommitted changes to {}",
            dirty.join(", ")
        )
    }
}

const BEGIN: &str = "<!-- bench:";
const END: &str = "<!-- /bench:";

/// The file's fixed head: what it is and how it is made.
const HEAD: &str = "# Benchmarks

<!-- Generated by `cargo run --release --example bench`: do not edit by hand, rerun it. -->

Speed and memory of `pacs_exporter`, next to the tools PACS administrators use today (DCMTK's
`echoscu` and `findscu`, pynetdicom scripts), measured by one command that starts its own peers
(stock Debian Orthanc with Nagle on, as users run it, and Orthanc with Nagle off), loads
generated studies, runs each case several times and writes this file:

    cargo run --release --example bench -- [echo|send_check|fleet|memory|all]

A case given alone regenerates its own section and keeps the others. Nothing here is asserted by
a test; the code is `examples/bench/`. Every section says when, where and from which revision its
figures came, and which of the project's targets they meet.
";

/// `BENCHMARKS.md` with `sections` put in place of their earlier versions; sections of other
/// cases are kept, in the order of `order`.
pub fn regenerate(existing: &str, sections: &[Section], order: &[&str]) -> String {
    let mut out = HEAD.to_string();
    for key in order {
        let fresh = sections.iter().find(|s| s.key == *key);
        let text = match fresh {
            Some(section) => Some(section.markdown()),
            None => kept(existing, key),
        };
        if let Some(text) = text {
            let _ = write!(
                out,
                "\n{BEGIN}{key} -->\n{}\n{END}{key} -->\n",
                text.trim_end()
            );
        }
    }
    out
}

/// A section of an earlier run, between its markers.
fn kept(existing: &str, key: &str) -> Option<String> {
    let begin = format!("{BEGIN}{key} -->\n");
    let end = format!("{END}{key} -->");
    let start = existing.find(&begin)? + begin.len();
    let stop = start + existing[start..].find(&end)?;
    Some(existing[start..stop].to_string())
}
