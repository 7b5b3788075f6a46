//! `ci-pod-webhook sizing`: what job pods really used per class and container role,
//! read from Prometheus, against the policy's limits; and the limits that would have
//! held 99 % of them (docs/sizing.md).
//!
//! It reads only Prometheus' HTTP API: the webhook's `ci_pod_webhook_job_pod_info` for
//! each job pod's class, the kubelets' cAdvisor series for usage. [`crate::sizing`]
//! asks and computes; this file holds the flags, the progress line and the table.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use ci_pod_webhook_core::quantity::Quantity;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::prometheus::{self, Prometheus};
use crate::sizing::stats::div_ceil;
use crate::sizing::{
    self, Entry, Figures, Headroom, Progress, Report, Source, Window, fetch::Query,
};

/// Exit code when `--fail-on over-limit` finds pods over a limit.
pub const FAILED_ON: u8 = 3;
/// The environment variable that may hold the bearer token itself.
const TOKEN_ENV: &str = "PROMETHEUS_BEARER_TOKEN";
/// Pods over a limit the table lists per class and role; `-o json` lists all.
const TABLE_OVER: usize = 10;

#[derive(Debug, clap::Args)]
pub struct SizingArgs {
    /// Prometheus' base URL, with its path prefix if it has one.
    #[arg(long, env = "PROMETHEUS_URL", value_name = "URL")]
    pub prometheus: String,
    /// How far back to look, as Prometheus writes durations: 7d, 36h, 2w, 1d12h.
    #[arg(long, default_value = "7d", value_parser = Window::parse, value_name = "DURATION")]
    pub since: Window,
    /// The end of the window, RFC 3339 (2026-05-04T00:00:00Z); default now. With
    /// --since, compare the week before a policy change with the week after.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub until: Option<OffsetDateTime>,
    /// Policy file whose class limits and ceilings to compare with; the embedded
    /// default policy when left out. Use the policy the webhook runs with.
    #[arg(long, env = "CI_POD_WEBHOOK_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Suggested limit = p99 × headroom, then rounded up and capped by the class max.
    #[arg(long, default_value = "1.2", value_parser = parse_headroom, value_name = "FACTOR")]
    pub headroom: Quantity,
    /// `table` or `json`.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,
    /// Exit with code 3 when any class has pods over its limit (`over-limit`).
    #[arg(long, value_enum, value_name = "CONDITION")]
    pub fail_on: Option<FailOn>,
    /// File holding a bearer token for Prometheus (a ServiceAccount token, an OAuth
    /// proxy's token). Or put the token itself in $PROMETHEUS_BEARER_TOKEN (not a flag:
    /// flags show in `ps`).
    #[arg(long, env = "PROMETHEUS_BEARER_TOKEN_FILE", value_name = "FILE")]
    pub bearer_token_file: Option<PathBuf>,
    /// CA certificates (PEM) to check Prometheus' certificate with, instead of the
    /// system's.
    #[arg(long, env = "PROMETHEUS_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The range of the CPU rate: a pod's CPU peak is its highest
    /// rate(container_cpu_usage_seconds_total[RANGE]). At least twice the kubelets'
    /// scrape interval.
    #[arg(long, default_value = "1m", value_parser = Window::parse, value_name = "RANGE")]
    pub cpu_rate: Window,
    /// Bounds each query (one per day of the window and figure).
    #[arg(long, default_value = "2m", value_parser = Window::parse, value_name = "DURATION")]
    pub timeout: Window,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any class with a pod whose memory or CPU peak was over the class limit.
    OverLimit,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-05-04T00:00:00Z: {e}"))
}

fn parse_headroom(text: &str) -> Result<Quantity, String> {
    let headroom = Quantity::parse(text).map_err(|e| e.to_string())?;
    if headroom < Quantity::from_units(1) || headroom > Quantity::from_units(10) {
        return Err(format!(
            "{text} is not a headroom between 1 and 10 (1.2 is 20 % more)"
        ));
    }
    Ok(headroom)
}

/// Runs the queries and prints the report.
pub fn run(args: &SizingArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(args.policy.as_deref())?;
    let token = match &args.bearer_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --bearer-token-file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty()),
    };
    let until = args
        .until
        .unwrap_or_else(OffsetDateTime::now_utc)
        .replace_nanosecond(0)
        .context("cannot take the time")?;
    let until_text = until.format(&Rfc3339).context("cannot write the time")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let query = Query {
        until: until.unix_timestamp(),
        since: args.since.clone(),
        cpu_rate: args.cpu_rate.clone(),
    };
    let mut line = ProgressLine::new();
    let usage = runtime.block_on(async {
        let client = Prometheus::new(&prometheus::Config {
            url: args.prometheus.clone(),
            bearer_token: token,
            ca_file: args.ca_file.clone(),
            timeout: Duration::from_secs(args.timeout.seconds),
        })?;
        let mut show = |progress: Progress| line.show(progress);
        let mut warn = |warning: &str| eprintln!("warning: Prometheus: {warning}");
        sizing::fetch(&client, &query, &until_text, &mut show, &mut warn).await
    });
    line.clear();
    let usage = usage?;
    let report = sizing::report(
        &policy,
        &usage,
        Source {
            prometheus: args.prometheus.trim_end_matches('/').to_string(),
            since: args.since.text.clone(),
            until: until_text,
            headroom: Headroom(args.headroom),
        },
    );
    match args.output {
        Output::Table => write_table(&report, out)?,
        Output::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
    }
    Ok(
        if args.fail_on == Some(FailOn::OverLimit) && report.any_over_limit() {
            ExitCode::from(FAILED_ON)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// One line on standard error, rewritten in place, when it is a terminal.
struct ProgressLine {
    on: bool,
    shown: bool,
}

impl ProgressLine {
    fn new() -> Self {
        ProgressLine {
            on: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn show(&mut self, progress: Progress) {
        if !self.on {
            return;
        }
        self.shown = true;
        eprint!(
            "\r\x1b[2Kquerying Prometheus: {} of day {}/{} ({}/{} queries)",
            progress.what, progress.day, progress.days, progress.done, progress.total
        );
        let _ = std::io::stderr().flush();
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.shown = false;
        }
    }
}

/// Memory for people: bytes in the largest binary unit, one decimal, rounded up (so a
/// peak over a limit never reads as equal to it). Exact values are in `-o json`.
fn memory(q: Option<Quantity>) -> String {
    let Some(q) = q else {
        return "-".to_string();
    };
    let bytes = q.value_ceil();
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut unit = 0;
    let mut scale: i64 = 1;
    while unit + 1 < UNITS.len() && bytes >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    if unit == 0 {
        return bytes.to_string();
    }
    let tenths = div_ceil(i128::from(bytes) * 10, i128::from(scale));
    format!("{}.{}{}", tenths / 10, tenths % 10, UNITS[unit])
}

/// CPU for people: cores with two decimals, rounded up.
fn cpu(q: Option<Quantity>) -> String {
    let Some(q) = q else {
        return "-".to_string();
    };
    let hundredths = div_ceil(i128::from(q.milli_value_ceil()), 10);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn limit(q: Option<Quantity>) -> String {
    q.map_or("none".to_string(), |q| q.to_string())
}

fn suggested(figures: &Figures) -> String {
    match (figures.suggested, figures.capped) {
        (Some(q), true) => format!("{q} (max)"),
        (Some(q), false) => q.to_string(),
        (None, _) => "-".to_string(),
    }
}

fn percent(
    peak: Option<Quantity>,
    limit: Option<Quantity>,
    show: fn(Option<Quantity>) -> String,
) -> String {
    match (peak, limit) {
        (Some(p), Some(l)) if l.is_positive() => {
            let ratio = div_ceil(p.nanos() * 100, l.nanos());
            format!("{} ({ratio}%)", show(Some(p)))
        }
        (p, _) => show(p),
    }
}

/// The table: memory, then CPU, per class and role with data; the classes and roles
/// without, and why; then the pods over a limit, worst first.
fn write_table(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    let source = &report.source;
    writeln!(
        out,
        "Prometheus {}, {} up to {}, headroom {}",
        source.prometheus, source.since, source.until, source.headroom
    )?;
    let shown: Vec<&Entry> = report.classes.iter().filter(|e| e.jobs > 0).collect();
    let name = |e: &Entry| {
        if e.in_policy {
            e.class.clone()
        } else {
            format!("{} (not in the policy)", e.class)
        }
    };
    if !shown.is_empty() {
        writeln!(out, "\nMEMORY: peak working set per job pod")?;
        let rows: Vec<[String; 11]> = shown
            .iter()
            .map(|e| {
                let m = &e.memory;
                [
                    name(e),
                    e.container.to_string(),
                    e.jobs.to_string(),
                    limit(m.limit),
                    memory(m.p50),
                    memory(m.p95),
                    memory(m.p99),
                    memory(m.max),
                    m.over_limit.to_string(),
                    m.oom_killed.unwrap_or(0).to_string(),
                    suggested(m),
                ]
            })
            .collect();
        super::write_table(
            out,
            &[
                "CLASS",
                "CONTAINER",
                "JOBS",
                "LIMIT",
                "P50",
                "P95",
                "P99",
                "MAX",
                "OVER",
                "OOM",
                "SUGGESTED",
            ],
            &rows,
        )?;
        writeln!(out, "\nCPU: peak rate per job pod, in CPUs")?;
        let rows: Vec<[String; 10]> = shown
            .iter()
            .map(|e| {
                let c = &e.cpu;
                [
                    name(e),
                    e.container.to_string(),
                    e.jobs.to_string(),
                    limit(c.limit),
                    cpu(c.p50),
                    cpu(c.p95),
                    cpu(c.p99),
                    cpu(c.max),
                    c.over_limit.to_string(),
                    suggested(c),
                ]
            })
            .collect();
        super::write_table(
            out,
            &[
                "CLASS",
                "CONTAINER",
                "JOBS",
                "LIMIT",
                "P50",
                "P95",
                "P99",
                "MAX",
                "OVER",
                "SUGGESTED",
            ],
            &rows,
        )?;
    }

    // A class with no data at all is one line; a role missing from a class that has
    // data (no services containers) is left to the JSON.
    let mut missing: Vec<(String, &str)> = Vec::new();
    for e in &report.classes {
        let class_has_data = report
            .classes
            .iter()
            .any(|o| o.class == e.class && o.jobs > 0);
        if !class_has_data
            && e.container == "build"
            && let Some(why) = &e.no_data
        {
            missing.push((name(e), why));
        }
    }
    if !missing.is_empty() {
        writeln!(out, "\nNO DATA")?;
        for (class, why) in missing {
            writeln!(out, "{class}: {why}")?;
        }
    }

    let over: Vec<&Entry> = shown
        .iter()
        .copied()
        .filter(|e| !e.over.is_empty())
        .collect();
    if !over.is_empty() {
        writeln!(
            out,
            "\nOVER THE LIMIT: worst first, {TABLE_OVER} per class and container (-o json lists all)"
        )?;
        let mut rows: Vec<[String; 7]> = Vec::new();
        for e in over {
            for pod in e.over.iter().take(TABLE_OVER) {
                rows.push([
                    name(e),
                    e.container.to_string(),
                    pod.namespace.clone(),
                    pod.pod.clone(),
                    pod.project.clone().unwrap_or_else(|| "-".to_string()),
                    percent(pod.memory_peak, e.memory.limit, memory),
                    percent(pod.cpu_peak, e.cpu.limit, cpu),
                ]);
            }
            if e.over.len() > TABLE_OVER {
                rows.push([
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("… and {} more", e.over.len() - TABLE_OVER),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        super::write_table(
            out,
            &[
                "CLASS",
                "CONTAINER",
                "NAMESPACE",
                "POD",
                "PROJECT",
                "MEMORY PEAK",
                "CPU PEAK",
            ],
            &rows,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
