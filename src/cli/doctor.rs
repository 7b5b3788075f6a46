//! `ci-pod-webhook doctor`: connects like kubectl, fetches every object once, runs the
//! checks of [`crate::doctor`] and prints the report; exit code 1 on any failure.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use time::OffsetDateTime;

use super::kube::KubeArgs;
use crate::doctor::{self, Check, Inputs, Names, Report, Scope, Snapshot};

const API_GROUP: &str = "kubernetes API";
/// Bounds each request, so an unreachable API server fails the run instead of hanging.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Only the checks that make sense before installing (policy, nodes, GPUs,
    /// RuntimeClasses, namespaces).
    #[arg(long, conflicts_with = "install")]
    pub pre: bool,
    /// Only the install's own checks (policy ConfigMap, webhook configuration,
    /// certificate, Deployment, Service and endpoints, the webhook's cluster access):
    /// a gate for a deployment pipeline that nodes, GPUs, namespaces and the node Docker
    /// daemon do not fail.
    #[arg(long)]
    pub install: bool,
    /// Check this policy file instead of the one in the cluster's ConfigMap.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The webhook's namespace.
    #[arg(long, default_value = "ci-pod-webhook", value_name = "NAMESPACE")]
    pub namespace: String,
    /// The node Docker daemon's namespace (its DaemonSet is `ci-dind`).
    #[arg(long, default_value = "ci-dind", value_name = "NAMESPACE")]
    pub docker_namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

impl DoctorArgs {
    /// Which checks `--pre` and `--install` ask for (clap keeps them apart).
    pub fn scope(&self) -> Scope {
        match (self.pre, self.install) {
            (true, _) => Scope::Pre,
            (false, true) => Scope::Install,
            (false, false) => Scope::All,
        }
    }
}

/// Runs the doctor and writes its report; exit code 1 if any check failed.
pub fn run(args: &DoctorArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let names = Names {
        namespace: args.namespace.clone(),
        docker_namespace: args.docker_namespace.clone(),
        ..Names::default()
    };
    let scope = args.scope();
    let report = runtime.block_on(async {
        let client = args.kube.connect(Some(REQUEST_TIMEOUT)).await?;
        let mut report = Report::default();
        match client.apiserver_version().await {
            Ok(info) => report.checks.push(Check::ok(
                API_GROUP,
                format!("can reach the Kubernetes API ({})", info.git_version),
            )),
            Err(error) => {
                report.checks.push(
                    Check::failure(
                        API_GROUP,
                        format!("cannot reach the Kubernetes API: {error}"),
                    )
                    .fix("check the kubeconfig and context (kubectl cluster-info)"),
                );
                return Ok::<_, anyhow::Error>(report);
            }
        }
        let snapshot = Snapshot::fetch(&client, &names, scope).await;
        let inputs = Inputs {
            names: &names,
            policy_file: args.policy.as_deref(),
            scope,
            now: OffsetDateTime::now_utc(),
        };
        report
            .checks
            .extend(doctor::checks(&inputs, &snapshot).checks);
        Ok(report)
    })?;
    match args.output {
        Output::Text => out.write_all(report.text().as_bytes())?,
        Output::Json => {
            serde_json::to_writer_pretty(&mut *out, &report.json())?;
            writeln!(out)?;
        }
    }
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
