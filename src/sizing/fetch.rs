//! The queries behind a sizing report, and one peak per job pod container out of them.
//!
//! The window is cut into days, newest first, and each query runs once per day with a
//! range selector of that day: a week of cAdvisor samples of every container at once
//! would load more samples than Prometheus allows one query (`--query.max-samples`,
//! 50 million by default), and the days give the progress line something to count.
//! Peaks over the window are the highest of the days' peaks.
//!
//! First the job pods (`ci_pod_webhook_job_pod_info`, deduplicated across replicas with
//! `max by (namespace, pod, class, project)`, and `exported_pod` to notice a scrape that
//! renamed the pod's labels); then, only in their namespaces, each
//! container's memory peak, CPU peak and OOM events. The join of usage and class is
//! made here, not in PromQL: a pod whose class changed within the window has two info
//! series, which `group_left` would refuse as many-to-many; here it keeps the class it
//! had last.

use std::collections::{BTreeSet, HashMap};

use super::{ContainerKey, PodInfo, PodKey, Usage};
use crate::prometheus::{self, Prometheus, Sample};

/// The series that names each job pod's class.
pub const INFO: &str = "ci_pod_webhook_job_pod_info";
/// The length of one query's range.
const DAY: u64 = 24 * 60 * 60;
/// Containers that are not a job's: the pod cgroup itself (`""`) and the pause container.
const CONTAINERS: &str = r#"container!="", container!="POD""#;

/// A duration as Prometheus writes them (`7d`, `36h`, `1w`, `1d12h`), kept with its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub text: String,
    pub seconds: u64,
}

impl Window {
    /// Parses `[0-9]+(y|w|d|h|m|s)`, repeated, largest unit first; at least a second.
    ///
    /// # Errors
    /// Anything else, with an example.
    pub fn parse(text: &str) -> Result<Window, String> {
        let bad = || format!("{text:?} is not a duration such as 7d, 36h, 1w or 1d12h");
        let mut seconds: u64 = 0;
        let mut rest = text;
        let mut last_unit = u64::MAX;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit = match rest.as_bytes().first() {
                Some(b'y') => 365 * DAY,
                Some(b'w') => 7 * DAY,
                Some(b'd') => DAY,
                Some(b'h') => 3600,
                Some(b'm') if !rest.starts_with("ms") => 60,
                Some(b's') => 1,
                _ => return Err(bad()),
            };
            if unit >= last_unit {
                return Err(bad());
            }
            last_unit = unit;
            rest = &rest[1..];
            seconds = number
                .checked_mul(unit)
                .and_then(|s| s.checked_add(seconds))
                .ok_or_else(bad)?;
        }
        if seconds == 0 {
            return Err(bad());
        }
        Ok(Window {
            text: text.to_string(),
            seconds,
        })
    }
}

/// What to ask for.
#[derive(Clone, Debug)]
pub struct Query {
    /// The window's end, Unix seconds.
    pub until: i64,
    pub since: Window,
    /// The range of `rate(container_cpu_usage_seconds_total[…])`.
    pub cpu_rate: Window,
}

/// How far [`fetch`] has come, for a progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Queries answered, out of `total`.
    pub done: usize,
    pub total: usize,
    /// What the running query asks for.
    pub what: &'static str,
    /// Which day of the window (1 is the newest), out of `days`.
    pub day: usize,
    pub days: usize,
}

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Prometheus(#[from] prometheus::Error),
    #[error(
        "no job pods in the window ({since} up to {until}): Prometheus at {url} has no \
         {INFO} series then. Is the webhook (`serve` with a cluster) scraped, and had it \
         run that long? (docs/sizing.md)"
    )]
    Empty {
        url: String,
        since: String,
        until: String,
    },
    #[error(
        "{INFO} at {url} has exported_namespace/exported_pod labels: the scrape renamed the \
         job pod's labels. Keep them with honorLabels: true in the ServiceMonitor \
         (honor_labels: true in a scrape config; docs/sizing.md)"
    )]
    Relabelled { url: String },
}

/// One range of the window: its end and length, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub end: i64,
    pub seconds: u64,
}

/// The window as days, newest first; the oldest may be shorter.
pub fn spans(until: i64, window: u64) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut covered = 0;
    while covered < window {
        let seconds = DAY.min(window - covered);
        spans.push(Span {
            end: until - covered as i64,
            seconds,
        });
        covered += seconds;
    }
    spans
}

/// The PromQL of each step, for one span.
pub fn info_query(span: Span) -> String {
    format!(
        "max by (namespace, pod, class, project, exported_pod) (max_over_time({INFO}[{}s]))",
        span.seconds
    )
}

pub fn memory_query(span: Span, selector: &str) -> String {
    format!(
        "max by (namespace, pod, container) (max_over_time(container_memory_working_set_bytes{{{selector}}}[{}s]))",
        span.seconds
    )
}

/// The highest `rate(…[cpu_rate])` of each container, evaluated every half rate window.
pub fn cpu_query(span: Span, selector: &str, cpu_rate: u64) -> String {
    format!(
        "max by (namespace, pod, container) (max_over_time(rate(container_cpu_usage_seconds_total{{{selector}}}[{cpu_rate}s])[{}s:{}s]))",
        span.seconds,
        (cpu_rate / 2).max(1)
    )
}

pub fn oom_query(span: Span, selector: &str) -> String {
    format!(
        "max by (namespace, pod, container) (max_over_time(container_oom_events_total{{{selector}}}[{}s])) > 0",
        span.seconds
    )
}

/// Asks Prometheus, day by day, and keeps one peak per job pod container. `progress`
/// is called before each query, `warn` with each distinct warning Prometheus gives.
///
/// # Errors
/// Prometheus fails, or has no job pod in the window ([`FetchError::Empty`]).
pub async fn fetch(
    prometheus: &Prometheus,
    query: &Query,
    until_text: &str,
    progress: &mut dyn FnMut(Progress),
    warn: &mut dyn FnMut(&str),
) -> Result<Usage, FetchError> {
    let spans = spans(query.until, query.since.seconds);
    let days = spans.len();
    let total = 4 * days;
    let mut done = 0;
    let mut warned = BTreeSet::new();
    let mut ask = async |what: &'static str, day: usize, span: Span, promql: String| {
        progress(Progress {
            done,
            total,
            what,
            day: day + 1,
            days,
        });
        done += 1;
        let answer = prometheus.query(&promql, span.end).await?;
        for warning in answer.warnings {
            if warned.insert(warning.clone()) {
                warn(&warning);
            }
        }
        Ok::<_, prometheus::Error>(answer.samples)
    };

    let mut usage = Usage::default();
    for (day, span) in spans.iter().enumerate() {
        let mut samples = ask("job pods", day, *span, info_query(*span)).await?;
        // Within a day, a pod with two classes keeps the first in this order; across
        // days, the newest day's class wins (spans are newest first).
        samples.sort_by(|a, b| {
            (a.label("class"), a.label("project")).cmp(&(b.label("class"), b.label("project")))
        });
        // A scrape without honorLabels renames the job pod's labels and puts the
        // webhook's own pod in their place: every pod would be the webhook.
        if samples.iter().any(|s| !s.label("exported_pod").is_empty()) {
            return Err(FetchError::Relabelled {
                url: prometheus.url().to_string(),
            });
        }
        for sample in &samples {
            if let Some(key) = pod_key(sample)
                && !sample.label("class").is_empty()
            {
                let project = Some(sample.label("project"))
                    .filter(|p| !p.is_empty())
                    .map(str::to_string);
                usage.pods.entry(key).or_insert_with(|| PodInfo {
                    class: sample.label("class").to_string(),
                    project,
                });
            }
        }
    }
    if usage.pods.is_empty() {
        return Err(FetchError::Empty {
            url: prometheus.url().to_string(),
            since: query.since.text.clone(),
            until: until_text.to_string(),
        });
    }

    let namespaces: BTreeSet<&str> = usage.pods.keys().map(|k| k.namespace.as_str()).collect();
    let selector = format!(
        "{CONTAINERS}, namespace=~{}",
        prometheus::string_literal(&prometheus::exact_alternation(namespaces))
    );
    let mut memory: HashMap<ContainerKey, f64> = HashMap::new();
    let mut cpu: HashMap<ContainerKey, f64> = HashMap::new();
    let mut oom: BTreeSet<ContainerKey> = BTreeSet::new();
    for (day, span) in spans.iter().enumerate() {
        let samples = ask("memory peaks", day, *span, memory_query(*span, &selector)).await?;
        keep_highest(&usage, &mut memory, samples);
    }
    for (day, span) in spans.iter().enumerate() {
        let promql = cpu_query(*span, &selector, query.cpu_rate.seconds);
        let samples = ask("CPU peaks", day, *span, promql).await?;
        keep_highest(&usage, &mut cpu, samples);
    }
    for (day, span) in spans.iter().enumerate() {
        let samples = ask("OOM events", day, *span, oom_query(*span, &selector)).await?;
        let mut found = HashMap::new();
        keep_highest(&usage, &mut found, samples);
        oom.extend(found.into_keys());
    }
    usage.memory = memory.into_iter().collect();
    usage.cpu = cpu.into_iter().collect();
    usage.oom = oom;
    Ok(usage)
}

fn pod_key(sample: &Sample) -> Option<PodKey> {
    let (namespace, pod) = (sample.label("namespace"), sample.label("pod"));
    (!namespace.is_empty() && !pod.is_empty()).then(|| PodKey {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
    })
}

/// Keeps each job pod container's highest value; other pods' series are dropped.
fn keep_highest(usage: &Usage, peaks: &mut HashMap<ContainerKey, f64>, samples: Vec<Sample>) {
    for sample in samples {
        let Some(key) = pod_key(&sample) else {
            continue;
        };
        if !usage.pods.contains_key(&key) {
            continue;
        }
        let container = sample.label("container").to_string();
        let peak = peaks.entry((key, container)).or_insert(sample.value);
        *peak = peak.max(sample.value);
    }
}
