//! `ci-pod-webhook audit`: the job pods that exist now, judged by today's policy.
//!
//! Read-only: it lists namespaces and pods, nothing else (the ClusterRole in
//! `manifests/audit/`). It connects as kubectl does: `--kubeconfig` or `$KUBECONFIG` or
//! `~/.kube/config` with `--context`, else the in-cluster service account. Pods are
//! listed a page at a time and only a small [`Row`] per job pod is kept, so a cluster
//! of many pods costs little memory. Each pod is judged by [`cluster::judge`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, ObjectList};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::{Api, Client};
use serde::Serialize;

use super::TableOrJson as Output;
use super::kube::KubeArgs;
use crate::cluster::{self, Judgement, Verdict};
use ci_pod_webhook_core::policy::Policy;

/// Exit code when a pod has a verdict named by `--fail-on`.
pub const FAILED_ON: u8 = 3;
/// Pods asked for per page: bounds what one answer holds in memory. kube reads a page
/// through serde's buffered `flatten` (about 1 MiB per 20 KB job pod while it is read:
/// see `cluster::pods`), so 50 pods hold about 50 MiB at once.
const PAGE: u32 = 50;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Policy file to judge by; the embedded default policy when left out. Use the
    /// policy the webhook runs with (its ConfigMap).
    #[arg(long, env = "CI_POD_WEBHOOK_POLICY")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Only this namespace, judged as if it had opted in (to preview one that has not);
    /// repeatable. Default: every namespace labelled `<prefix>/pod-policy=enabled|warn`.
    #[arg(long, short = 'n')]
    pub namespace: Vec<String>,
    /// `table` (grouped by class, then the pods that are not ok) or `json`.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,
    /// Exit with code 3 when any pod has one of these verdicts, e.g. `unpolicied,drift`
    /// (a pod can have two: `unpolicied` and `would-deny`; either matches).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub fail_on: Vec<FailOn>,
}

/// A verdict `--fail-on` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Drift,
    Unpolicied,
    WouldMutate,
    WouldDeny,
}

impl FailOn {
    fn verdict(self) -> Verdict {
        match self {
            FailOn::Drift => Verdict::Drift,
            FailOn::Unpolicied => Verdict::Unpolicied,
            FailOn::WouldMutate => Verdict::WouldMutate,
            FailOn::WouldDeny => Verdict::WouldDeny,
        }
    }
}

/// One job pod in the report.
#[derive(Debug, Serialize)]
pub struct Row {
    pub namespace: String,
    pub pod: String,
    #[serde(flatten)]
    pub judgement: Judgement,
}

/// Runs the audit and prints the report.
pub fn run(args: &AuditArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let policy = match &args.policy {
        Some(path) => crate::policy_file::load(path)?,
        None => Policy::embedded(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let rows = runtime.block_on(async {
        let client = args.kube.connect(None).await?;
        collect(&client, &policy, &args.namespace).await
    })?;
    match args.output {
        Output::Table => write_table(&rows, out)?,
        Output::Json => {
            serde_json::to_writer_pretty(&mut *out, &report(&rows))?;
            writeln!(out)?;
        }
    }
    let failed = rows
        .iter()
        .any(|row| args.fail_on.iter().any(|f| row.judgement.has(f.verdict())));
    Ok(if failed {
        ExitCode::from(FAILED_ON)
    } else {
        ExitCode::SUCCESS
    })
}

/// The namespaces to look at and their labels.
async fn namespaces(
    client: &Client,
    policy: &Policy,
    only: &[String],
) -> anyhow::Result<Vec<(String, BTreeMap<String, String>)>> {
    let api = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
    let mut found = Vec::new();
    if only.is_empty() {
        for namespace in api
            .list_metadata(&ListParams::default())
            .await
            .context("cannot list namespaces")?
        {
            let labels = namespace.metadata.labels.unwrap_or_default();
            if cluster::audited(policy, &labels) {
                found.push((namespace.metadata.name.unwrap_or_default(), labels));
            }
        }
    } else {
        for name in only {
            let namespace = api
                .get_metadata_opt(name)
                .await
                .with_context(|| format!("cannot read namespace {name}"))?
                .with_context(|| format!("--namespace {name}: no such namespace"))?;
            found.push((name.clone(), namespace.metadata.labels.unwrap_or_default()));
        }
    }
    Ok(found)
}

/// Every job pod in the namespaces, judged. Pods are read as the API server sends
/// them (not through a typed Pod, which would drop fields it does not know).
pub async fn collect(
    client: &Client,
    policy: &Policy,
    only: &[String],
) -> anyhow::Result<Vec<Row>> {
    let resource = ApiResource::erase::<Pod>(&());
    let mut rows = Vec::new();
    for (namespace, labels) in namespaces(client, policy, only).await? {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &resource);
        // Only pods with GitLab Runner's `pod` label, as the live audit watches them.
        let mut params = ListParams::default()
            .labels(cluster::pods::JOB_POD_SELECTOR)
            .limit(PAGE);
        loop {
            let page: ObjectList<DynamicObject> = api
                .list(&params)
                .await
                .with_context(|| format!("cannot list pods in {namespace}"))?;
            for pod in page.items {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let json = serde_json::to_string(&pod)?;
                match cluster::judge(policy, &namespace, &labels, &json) {
                    Ok(Some(judgement)) => rows.push(Row {
                        namespace: namespace.clone(),
                        pod: name,
                        judgement,
                    }),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(namespace, pod = name, %error, "cannot judge pod"),
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    rows.sort_by(|a, b| {
        (&a.judgement.class, &a.namespace, &a.pod).cmp(&(&b.judgement.class, &b.namespace, &b.pod))
    });
    Ok(rows)
}

/// Per class: the pods, and how many have each verdict (a pod with two verdicts counts
/// under both, so the verdicts can add up to more than the pods).
#[derive(Default)]
struct ClassCounts {
    pods: usize,
    verdicts: BTreeMap<Verdict, usize>,
}

fn counts(rows: &[Row]) -> BTreeMap<&str, ClassCounts> {
    let mut counts: BTreeMap<&str, ClassCounts> = BTreeMap::new();
    for row in rows {
        let class = counts.entry(row.judgement.class.as_str()).or_default();
        class.pods += 1;
        for verdict in &row.judgement.verdicts {
            *class.verdicts.entry(*verdict).or_default() += 1;
        }
    }
    counts
}

#[derive(Serialize)]
struct Report<'a> {
    /// Per class: `pods`, then each verdict's count.
    summary: BTreeMap<&'a str, BTreeMap<&'static str, usize>>,
    pods: &'a [Row],
}

fn report(rows: &[Row]) -> Report<'_> {
    let summary = counts(rows)
        .into_iter()
        .map(|(class, counts)| {
            let mut by_name: BTreeMap<&'static str, usize> = Verdict::ALL
                .iter()
                .map(|v| (v.as_str(), counts.verdicts.get(v).copied().unwrap_or(0)))
                .collect();
            by_name.insert("pods", counts.pods);
            (class, by_name)
        })
        .collect();
    Report {
        summary,
        pods: rows,
    }
}

/// kubectl-like: a header row, columns padded to their widest cell.
fn write_table(rows: &[Row], out: &mut impl Write) -> std::io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "No job pods found.");
    }
    let mut header = vec!["CLASS".to_string(), "PODS".to_string()];
    header.extend(Verdict::ALL.iter().map(|v| v.as_str().to_uppercase()));
    let mut summary = vec![header];
    for (class, counts) in counts(rows) {
        let mut line = vec![class.to_string(), counts.pods.to_string()];
        line.extend(
            Verdict::ALL
                .iter()
                .map(|v| counts.verdicts.get(v).copied().unwrap_or(0).to_string()),
        );
        summary.push(line);
    }
    write_columns(&summary, out)?;
    let mut pods = vec![vec![
        "NAMESPACE".to_string(),
        "POD".to_string(),
        "CLASS".to_string(),
        "MODE".to_string(),
        "VERDICT".to_string(),
        "DETAILS".to_string(),
    ]];
    for row in rows.iter().filter(|r| !r.judgement.has(Verdict::Ok)) {
        let j = &row.judgement;
        let verdicts: Vec<&str> = j.verdicts.iter().map(|v| v.as_str()).collect();
        pods.push(vec![
            row.namespace.clone(),
            row.pod.clone(),
            j.class.clone(),
            j.mode.to_string(),
            verdicts.join(","),
            j.details.join("; "),
        ]);
    }
    if pods.len() > 1 {
        writeln!(out)?;
        write_columns(&pods, out)?;
    }
    Ok(())
}

fn write_columns(lines: &[Vec<String>], out: &mut impl Write) -> std::io::Result<()> {
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
