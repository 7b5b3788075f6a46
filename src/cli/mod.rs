//! The command line: `serve`, `mutate`, `check-policy`, `default-policy`, `certs`,
//! `doctor`, `audit`, `sizing`. The commands are the top layer: each has its file here, with its
//! clap arguments, and calls into the layers below (the core, `cluster`, `server`,
//! `doctor`, `certs`); nothing below imports from here.
//!
//! Arguments are parsed once into typed values by clap; each command then runs and
//! returns an exit code. Errors travel up as `anyhow` chains and `main` prints them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use audit::AuditArgs;
use certs::CertsArgs;
use ci_pod_webhook_core::explain;
use ci_pod_webhook_core::policy::{DEFAULT_POLICY_YAML, Limit, Policy, ResourceName, RunnerClass};
use doctor::DoctorArgs;
use serve::ServeArgs;
use sizing::SizingArgs;

#[derive(Debug, Parser)]
#[command(
    name = "ci-pod-webhook",
    version,
    about = "Kubernetes mutating admission webhook for GitLab CI job pods"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook (HTTPS) and the admin port (plain HTTP).
    // Boxed: its flags make it several times the size of the other commands.
    Serve(Box<ServeArgs>),
    /// Run an AdmissionReview, a Pod or a List of pods through the policy, offline.
    Mutate(MutateArgs),
    /// Validate a policy file (default: the embedded policy) and summarise its classes.
    CheckPolicy {
        /// Policy file to check; the embedded default policy when left out.
        file: Option<PathBuf>,
    },
    /// Print the embedded default policy.
    DefaultPolicy,
    /// Make a CA and a serving certificate for the webhook's Service.
    Certs(CertsArgs),
    /// Check, read-only, that the cluster is ready and the install healthy.
    Doctor(DoctorArgs),
    /// Report on the job pods that exist now: ok, drift, unpolicied, would-mutate, would-deny.
    Audit(AuditArgs),
    /// What job pods really used per class and container, from Prometheus, against the
    /// policy's limits; and the limits that would have held 99 % of them.
    Sizing(SizingArgs),
}

#[derive(Debug, Args)]
pub struct MutateArgs {
    /// Policy file; the embedded default policy when left out.
    #[arg(long, env = "CI_POD_WEBHOOK_POLICY")]
    pub policy: Option<PathBuf>,
    /// Labels of the request's namespace, as k=v,k=v; include the opt-in label
    /// (ci.skao.int/pod-policy=enabled) or nothing is changed. Without this flag the
    /// namespace counts as opted in with no class label, as in `serve` without a cluster.
    #[arg(long, value_name = "K=V,...", value_parser = parse_labels)]
    pub namespace_labels: Option<Labels>,
    /// For a Pod or List: the requesting user (e.g. system:serviceaccount:gitlab:runner).
    #[arg(long)]
    pub user: Option<String>,
    /// For a Pod or List: the request namespace (default: the pod's, else "default").
    #[arg(long)]
    pub namespace: Option<String>,
    /// Explain for a person: the class chosen and why, every change, and every value
    /// kept. With or without it, a denial exits with status 3.
    #[arg(long)]
    pub explain: bool,
    /// AdmissionReview, Pod (as `kubectl get pod NAME -o json` prints it) or List of
    /// pods (`kubectl get pods -o json`), JSON or YAML; `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
}

/// Namespace labels given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Labels(pub BTreeMap<String, String>);

fn parse_labels(s: &str) -> Result<Labels, String> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            format!("{pair:?} is not key=value (example: ci.skao.int/pod-policy=enabled)")
        })?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(Labels(labels))
}

/// `-o` of the commands that print a table for people and JSON for tools (`audit`,
/// `sizing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TableOrJson {
    Table,
    Json,
}

pub mod audit;
pub mod certs;
pub mod doctor;
pub mod kube;
mod mutate;
pub mod serve;
pub mod sizing;

/// Parses the command line and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Locked per command, not for the whole run: `serve` logs to stdout from a
    // background thread, which would wait forever on a lock held here.
    let stdout = std::io::stdout();
    match cli.command {
        Command::Serve(args) => serve::serve(&args),
        Command::Mutate(args) => mutate(&args, &mut stdout.lock()),
        Command::CheckPolicy { file } => check_policy(file.as_deref(), &mut stdout.lock()),
        Command::DefaultPolicy => {
            stdout.lock().write_all(DEFAULT_POLICY_YAML.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs(args) => certs::run(&args, &mut stdout.lock()),
        Command::Doctor(args) => doctor::run(&args, &mut stdout.lock()),
        Command::Audit(args) => audit::run(&args, &mut stdout.lock()),
        Command::Sizing(args) => sizing::run(&args, &mut stdout.lock()),
    }
}

pub use mutate::mutate;

/// Whether `error` is a write to a pipe whose reader has gone (`ci-pod-webhook … | head`).
/// Rust ignores SIGPIPE, so such a write fails with `EPIPE` instead of ending the
/// process; the command then stops where it is, and `main` ends quietly with 0 as a
/// shell tool does.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            // serde_json keeps the io::Error inside its own.
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    Ok(match path {
        Some(p) => crate::policy_file::load(p)?,
        None => Policy::embedded(),
    })
}

/// A kubectl-like table: columns padded to their widest cell, two spaces apart.
pub(crate) fn write_table<const N: usize, S: AsRef<str>>(
    out: &mut impl Write,
    header: &[&str; N],
    rows: &[[S; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.as_ref().chars().count());
        }
    }
    let header = header.map(|h| h.to_string());
    let lines = std::iter::once(header.each_ref().map(String::as_str))
        .chain(rows.iter().map(|r| r.each_ref().map(AsRef::as_ref)));
    for row in lines {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

pub fn check_policy(file: Option<&Path>, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let policy = load_policy(file)?;
    writeln!(
        out,
        "{}: OK (hash {}, prefix {}, {} classes, default {})",
        policy.origin,
        policy.hash,
        policy.prefix,
        policy.classes.len(),
        policy.classes[policy.default_class].name
    )?;
    writeln!(
        out,
        "opt-in namespace label: {}={}",
        policy.keys.opt_in,
        ci_pod_webhook_core::policy::OPT_IN_VALUE
    )?;
    for warning in policy.warnings() {
        writeln!(out, "warning: {warning}")?;
    }
    writeln!(out, "docker: {}", explain::docker_summary(&policy))?;
    writeln!(out, "overrides above a ceiling: {:?}", policy.on_exceed)?;
    writeln!(
        out,
        "gpuWorkloads: {}",
        explain::gpu_workloads_summary(&policy)
    )?;
    writeln!(out, "limitsEnv: {}", explain::limits_env_summary(&policy))?;
    writeln!(
        out,
        "ephemeralContainers: {}",
        policy.ephemeral_containers.as_str()
    )?;
    writeln!(out)?;
    let rows: Vec<[String; 6]> = policy.classes.iter().map(class_row).collect();
    let header = [
        "CLASS",
        "MATCH",
        "BUILD REQUESTS",
        "BUILD LIMITS",
        "MAX",
        "GPU",
    ]
    .map(String::from);
    write_table(out, &header.each_ref().map(String::as_str), &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn class_row(class: &RunnerClass) -> [String; 6] {
    let list = |m: &mut dyn Iterator<Item = (ResourceName, String)>| {
        let parts: Vec<String> = m.map(|(r, v)| format!("{r}={v}")).collect();
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(",")
        }
    };
    let requests = list(
        &mut class
            .build
            .requests
            .iter()
            .map(|(r, q)| (*r, q.to_string())),
    );
    let limits = list(&mut class.build.limits.iter().map(|(r, l)| {
        (
            *r,
            match l {
                Limit::Set(q) => q.to_string(),
                Limit::Unlimited => "none".to_string(),
            },
        )
    }));
    // cpu and memory always have a ceiling or are knowingly unlimited (`null`).
    let max =
        list(
            &mut ResourceName::ALL
                .into_iter()
                .filter_map(|r| match (class.max.get(&r), r) {
                    (Some(q), _) => Some((r, q.to_string())),
                    (None, ResourceName::EphemeralStorage) => None,
                    (None, _) => Some((r, "none".to_string())),
                }),
        );
    // Then what the class grants `build` besides (extendedResources), each at its most.
    let max = std::iter::once(max)
        .chain(
            class
                .extended_resources
                .iter()
                .map(|(k, q)| format!("{k}={q}")),
        )
        .collect::<Vec<_>>()
        .join(",");
    let gpu = class.gpu.as_ref().map_or("-".to_string(), |g| {
        format!("{} x{} (max {})", g.resource, g.count, g.max)
    });
    [
        class.name.clone(),
        explain::match_summary(class),
        requests,
        limits,
        max,
        gpu,
    ]
}
