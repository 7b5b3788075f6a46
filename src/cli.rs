//! The command line: `serve`, `mutate`, `check-policy`, `default-policy`, `certs`.
//!
//! Arguments are parsed once into typed values by clap; each command then runs and
//! returns an exit code. Errors travel up as `anyhow` chains and `main` prints them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::admission;
use crate::certs::{self, CertsArgs};
use crate::explain;
use crate::mutate::{self, NamespaceFacts};
use crate::policy::{DEFAULT_POLICY_YAML, Limit, Policy, ResourceName, RunnerClass};
use crate::server::config::ServeArgs;

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
    Serve(ServeArgs),
    /// Run one AdmissionReview (or a bare Pod) through the policy, offline.
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
    /// Report on the job pods that exist now: ok, drift, unpolicied or would-deny.
    Audit(crate::audit::AuditArgs),
}

#[derive(Debug, Args)]
pub struct MutateArgs {
    /// Policy file; the embedded default policy when left out.
    #[arg(long, env = "CI_POD_WEBHOOK_POLICY")]
    pub policy: Option<PathBuf>,
    /// Labels of the request's namespace, as k=v,k=v. Without this flag the namespace
    /// counts as opted in with no class label, as in `serve` without a cluster.
    #[arg(long, value_name = "K=V,...", value_parser = parse_labels)]
    pub namespace_labels: Option<Labels>,
    /// For a bare Pod: the requesting user (e.g. system:serviceaccount:gitlab:runner).
    #[arg(long)]
    pub user: Option<String>,
    /// For a bare Pod: the request namespace (default: the pod's, else "default").
    #[arg(long)]
    pub namespace: Option<String>,
    /// Explain for a person: the class chosen and why, and every change.
    #[arg(long)]
    pub explain: bool,
    /// AdmissionReview or Pod, JSON or YAML; `-` or nothing reads standard input.
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

/// Parses the command line and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Locked per command, not for the whole run: `serve` logs to stdout from a
    // background thread, which would wait forever on a lock held here.
    let stdout = std::io::stdout();
    match cli.command {
        Command::Serve(args) => crate::server::command::serve(&args),
        Command::Mutate(args) => mutate(&args, &mut stdout.lock()),
        Command::CheckPolicy { file } => check_policy(file.as_deref(), &mut stdout.lock()),
        Command::DefaultPolicy => {
            stdout.lock().write_all(DEFAULT_POLICY_YAML.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs(args) => run_certs(&args, &mut stdout.lock()),
        Command::Audit(args) => crate::audit::run(&args, &mut stdout.lock()),
    }
}

fn run_certs(args: &CertsArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    for path in certs::run(args)? {
        writeln!(out, "wrote {}", path.display())?;
    }
    writeln!(
        out,
        "caBundle for the MutatingWebhookConfiguration: the one line in {}",
        args.out.join(certs::CA_BUNDLE).display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    Ok(match path {
        Some(p) => Policy::load(p)?,
        None => Policy::embedded(),
    })
}

pub fn mutate(args: &MutateArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.policy.as_deref())?;
    let input = read_input(args.file.as_deref())?;
    let document = parse_document(&input)?;
    let review = as_review(document, args)?;
    let body = serde_json::to_vec(&review)?;
    let parsed = admission::parse(&body).context("the input is not a usable AdmissionReview")?;
    let facts = match &args.namespace_labels {
        Some(labels) => NamespaceFacts::Labels(&labels.0),
        None => NamespaceFacts::TrustSelector,
    };
    let decision =
        mutate::decide(&policy, facts, &parsed.request).context("cannot read the pod")?;
    let mode = crate::enforcement::mode(&policy, facts, &decision);
    if args.explain {
        let pod = review.pointer("/request/object").unwrap_or(&Value::Null);
        out.write_all(explain::render(&policy, &parsed, pod, &decision, mode).as_bytes())?;
    } else {
        let answer = admission::encode(&policy, &parsed, &decision, mode);
        let response: Value = serde_json::from_slice(&answer.body)?;
        serde_json::to_writer_pretty(&mut *out, &response)?;
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: Option<&Path>) -> anyhow::Result<String> {
    let mut text = String::new();
    match file {
        None => std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?,
        Some(p) if p == Path::new("-") => std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?,
        Some(p) => std::fs::File::open(p)
            .and_then(|mut f| f.read_to_string(&mut text))
            .with_context(|| format!("cannot read {}", p.display()))?,
    };
    Ok(text)
}

/// JSON, or else YAML (a superset, but its errors are less clear for JSON input).
fn parse_document(text: &str) -> anyhow::Result<Value> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return serde_json::from_str(text).context("the input is not valid JSON");
    }
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| anyhow::anyhow!("the input is neither JSON nor YAML: {e}"))
}

/// An AdmissionReview as it is, or a bare Pod wrapped in a CREATE review.
fn as_review(document: Value, args: &MutateArgs) -> anyhow::Result<Value> {
    match document.get("kind").and_then(Value::as_str) {
        Some("AdmissionReview") => Ok(document),
        Some("Pod") | None if document.get("spec").is_some() => {
            let namespace = args
                .namespace
                .clone()
                .or_else(|| {
                    document
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "default".to_string());
            let name = document
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null);
            Ok(json!({
                "apiVersion": admission::API_VERSION,
                "kind": "AdmissionReview",
                "request": {
                    "uid": "00000000-0000-0000-0000-00000000c11e",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "name": name,
                    "namespace": namespace,
                    "operation": "CREATE",
                    "userInfo": {"username": args.user.clone().unwrap_or_default()},
                    "object": document,
                    "dryRun": false
                }
            }))
        }
        Some(other) => bail!("the input is a {other}; give an AdmissionReview or a Pod"),
        None => bail!("the input has no kind and no spec; give an AdmissionReview or a Pod"),
    }
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
        crate::policy::OPT_IN_VALUE
    )?;
    writeln!(out, "docker: {}", explain::docker_summary(&policy))?;
    writeln!(out, "overrides above a ceiling: {:?}", policy.on_exceed)?;
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
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
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
    let max = list(&mut class.max.iter().map(|(r, q)| (*r, q.to_string())));
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
