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

use super::TableOrJson as Output;
use crate::prometheus::{self, Prometheus};
use crate::sizing::{self, Headroom, Progress, Source, Window, fetch::Query};

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
        Output::Table => table::write_table(&report, out)?,
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

mod table;
#[cfg(test)]
mod tests;
