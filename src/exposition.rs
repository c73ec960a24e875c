//! A probe's series and the text they are answered with: a small registry made fresh for
//! each probe, cheaper than a `prometheus::Registry` (no descriptors to build, no
//! collectors to box, no protobuf families to gather) for what a probe needs, gauges with or
//! without labels. The text is the Prometheus text format, as the prometheus crate writes it:
//! families by name, each with its `# HELP` and `# TYPE gauge`, series ordered by their label
//! values, label pairs by name.
//!
//! The exporter's own `/metrics` keep the prometheus crate (counters, histograms, the process
//! collector).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::metrics::Metric;

/// The series of one probe; clones share them.
#[derive(Clone, Default)]
pub struct Sheet(Arc<Mutex<Vec<Family>>>);

struct Family {
    metric: Metric,
    /// Label names, in the order values are given.
    labels: Vec<String>,
    series: Vec<Series>,
}

struct Series {
    values: Vec<String>,
    value: f64,
}

impl Sheet {
    pub fn new() -> Sheet {
        Sheet::default()
    }

    fn families(&self) -> MutexGuard<'_, Vec<Family>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `metric` with these label names (none for a plain gauge); a metric added twice is
    /// kept once, with the labels it was first added with.
    fn add(&self, metric: Metric, labels: &[&str]) -> usize {
        let mut families = self.families();
        if let Some(at) = families.iter().position(|f| f.metric.name == metric.name) {
            return at;
        }
        families.push(Family {
            metric,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            series: Vec::new(),
        });
        families.len() - 1
    }

    /// A gauge of `metric` without labels, 0 until set.
    pub fn gauge(&self, metric: Metric) -> Gauge {
        let gauge = self.unknown_gauge(metric);
        gauge.set(0.0);
        gauge
    }

    /// A gauge of `metric` without labels that is absent until set: for a value that may stay
    /// unknown, where 0 would claim something.
    pub fn unknown_gauge(&self, metric: Metric) -> Gauge {
        Gauge {
            sheet: self.clone(),
            family: self.add(metric, &[]),
            values: Vec::new(),
        }
    }

    /// A gauge of `metric` with these label names; its series appear as they are set.
    pub fn gauge_vec(&self, metric: Metric, labels: &[&str]) -> GaugeVec {
        GaugeVec {
            sheet: self.clone(),
            family: self.add(metric, labels),
        }
    }

    /// The text of every family but those `except` names, and `extra`'s, merged by name.
    pub fn render_with(&self, except: &[Metric], extra: Option<&Sheet>) -> String {
        let own = self.families();
        let extra = extra.map(Sheet::families);
        let mut families: Vec<&Family> = own
            .iter()
            .filter(|f| !except.iter().any(|m| m.name == f.metric.name))
            .chain(extra.iter().flat_map(|e| e.iter()))
            .collect();
        families.sort_by(|a, b| a.metric.name.cmp(b.metric.name));
        let mut text = String::with_capacity(families.len() * 160);
        for family in families {
            family.write(&mut text);
        }
        text
    }

    /// The text of every family.
    pub fn render(&self) -> String {
        self.render_with(&[], None)
    }
}

impl Family {
    fn write(&self, text: &mut String) {
        if self.series.is_empty() {
            return;
        }
        let name = self.metric.name;
        text.push_str("# HELP ");
        text.push_str(name);
        text.push(' ');
        escape(text, self.metric.help, false);
        let _ = write!(text, "\n# TYPE {name} gauge\n");
        // Label pairs by name; series by their values in that order.
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        order.sort_by(|&a, &b| self.labels[a].cmp(&self.labels[b]));
        let mut series: Vec<&Series> = self.series.iter().collect();
        series.sort_by(|a, b| {
            let values_a = order.iter().map(|&i| &a.values[i]);
            values_a.cmp(order.iter().map(|&i| &b.values[i]))
        });
        for s in series {
            text.push_str(name);
            if !order.is_empty() {
                text.push('{');
                for (n, &i) in order.iter().enumerate() {
                    if n > 0 {
                        text.push(',');
                    }
                    text.push_str(&self.labels[i]);
                    text.push_str("=\"");
                    escape(text, &s.values[i], true);
                    text.push('"');
                }
                text.push('}');
            }
            text.push(' ');
            write_value(text, s.value);
            text.push('\n');
        }
    }
}

/// Backslashes and line feeds escaped (and double quotes, in label values).
fn escape(text: &mut String, value: &str, quotes: bool) {
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '\n' => text.push_str("\\n"),
            '"' if quotes => text.push_str("\\\""),
            c => text.push(c),
        }
    }
}

fn write_value(text: &mut String, value: f64) {
    if value.is_nan() {
        text.push_str("NaN");
    } else if value == f64::INFINITY {
        text.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        text.push_str("-Inf");
    } else {
        let _ = write!(text, "{value}");
    }
}

impl Metric {
    /// Adds this metric to a probe's series as a gauge (0 until set).
    pub(crate) fn gauge(&self, sheet: &Sheet) -> Gauge {
        sheet.gauge(*self)
    }

    /// Adds this metric to a probe's series as a gauge that is absent until set.
    pub(crate) fn unknown_gauge(&self, sheet: &Sheet) -> Gauge {
        sheet.unknown_gauge(*self)
    }

    /// Adds this metric to a probe's series as a gauge with these label names.
    pub(crate) fn gauge_vec(&self, sheet: &Sheet, labels: &[&str]) -> GaugeVec {
        sheet.gauge_vec(*self, labels)
    }
}

/// One series of a [`Sheet`].
#[derive(Clone)]
pub struct Gauge {
    sheet: Sheet,
    family: usize,
    values: Vec<String>,
}

impl Gauge {
    pub fn set(&self, value: f64) {
        self.update(|v| *v = value);
    }

    pub fn inc(&self) {
        self.update(|v| *v += 1.0);
    }

    fn update(&self, change: impl FnOnce(&mut f64)) {
        let mut families = self.sheet.families();
        let Some(family) = families.get_mut(self.family) else {
            return;
        };
        match family.series.iter_mut().find(|s| s.values == self.values) {
            Some(series) => change(&mut series.value),
            None => {
                let mut value = 0.0;
                change(&mut value);
                family.series.push(Series {
                    values: self.values.clone(),
                    value,
                });
            }
        }
    }
}

/// A labelled metric of a [`Sheet`].
#[derive(Clone)]
pub struct GaugeVec {
    sheet: Sheet,
    family: usize,
}

impl GaugeVec {
    /// The series with these label values (in the order of the label names); it appears in
    /// the text once set. Values beyond the label names are ignored; missing ones are empty.
    pub fn with_label_values(&self, values: &[&str]) -> Gauge {
        let width = self
            .sheet
            .families()
            .get(self.family)
            .map_or(0, |f| f.labels.len());
        let values = (0..width)
            .map(|i| values.get(i).copied().unwrap_or_default().to_string())
            .collect();
        Gauge {
            sheet: self.sheet.clone(),
            family: self.family,
            values,
        }
    }

    /// Removes every series.
    pub fn reset(&self) {
        if let Some(family) = self.sheet.families().get_mut(self.family) {
            family.series.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    const A: Metric = Metric {
        name: "probe_a",
        help: "A gauge with a back\\slash and a\nline feed.",
    };
    const B: Metric = Metric {
        name: "probe_b_info",
        help: "Labelled.",
    };

    /// The same series through the prometheus crate, whose text Prometheus and the tests read.
    fn reference(values: &[(&str, &str, f64)], plain: f64) -> String {
        let registry = prometheus::Registry::new();
        let a = prometheus::Gauge::with_opts(A.opts()).unwrap();
        a.set(plain);
        let b = prometheus::GaugeVec::new(B.opts(), &["zone", "kind"]).unwrap();
        for (zone, kind, v) in values {
            b.with_label_values(&[zone, kind]).set(*v);
        }
        registry.register(Box::new(b)).unwrap();
        registry.register(Box::new(a)).unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_what_the_prometheus_crate_writes() {
        let values = [
            ("b\"q\\x\ny", "2", 0.00000007),
            ("a", "9", 1.0),
            ("a", "10", -3.5),
            ("é", "", 1e21),
        ];
        let sheet = Sheet::new();
        let b = sheet.gauge_vec(B, &["zone", "kind"]);
        for (zone, kind, v) in values {
            b.with_label_values(&[zone, kind]).set(v);
        }
        sheet.gauge(A).set(123456.789);
        assert_eq!(sheet.render(), reference(&values, 123456.789));
    }

    #[test]
    fn a_vec_without_series_is_left_out_and_reset_empties_it() {
        let sheet = Sheet::new();
        let b = sheet.gauge_vec(B, &["zone", "kind"]);
        assert_eq!(sheet.render(), "");
        b.with_label_values(&["x", "y"]).inc();
        b.with_label_values(&["x", "y"]).inc();
        assert!(sheet
            .render()
            .ends_with("probe_b_info{kind=\"y\",zone=\"x\"} 2\n"));
        b.reset();
        assert_eq!(sheet.render(), "");
    }

    #[test]
    fn render_with_leaves_out_and_merges_by_name() {
        let (sheet, extra) = (Sheet::new(), Sheet::new());
        sheet.gauge(A).set(1.0);
        sheet
            .gauge_vec(B, &["zone", "kind"])
            .with_label_values(&["z", "k"])
            .set(1.0);
        extra.gauge(A).set(2.0);
        let text = sheet.render_with(&[A], Some(&extra));
        assert!(text.starts_with("# HELP probe_a "), "{text}");
        assert!(
            text.contains("probe_a 2\n") && !text.contains("probe_a 1\n"),
            "{text}"
        );
        assert!(
            text.contains("probe_b_info{kind=\"k\",zone=\"z\"} 1\n"),
            "{text}"
        );
    }
}
