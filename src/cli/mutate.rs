//! `ci-pod-webhook mutate`: the policy applied offline to what an admin has at hand.
//!
//! Three inputs, JSON or YAML: an AdmissionReview (answered as the server would), a Pod
//! (wrapped in a CREATE review), and a `List` or `PodList` of pods, as
//! `kubectl get pods -o json` prints them (every item explained, then a summary table).
//!
//! A pod read from a cluster carries what the API server and the cluster added *after*
//! admission: `status`, `uid`, `resourceVersion`, `creationTimestamp`, `managedFields`,
//! the scheduler's `nodeName`. The decision never reads any of them (the core reads
//! only the facts in `mutate/view.rs`), so the pod is decided as if it were created now,
//! and the patch's paths are those of the pod at creation. What admission itself added
//! counts, because the webhook sees it too: the service-account token volume (added by
//! the ServiceAccount admission plugin, which runs before webhooks) and, on a pod this
//! webhook already changed, its own changes and audit annotations, so such a pod shows
//! only what the policy would change *now* (nothing, when the policy is the same). A pod
//! that has a name where the API server saw only a `generateName` (GitLab Runner up to
//! 16.1) is matched the same way: both start with `runner-<token>-`. The requesting user
//! is not stored in the pod: give `--user` for `serviceAccounts` rules.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::Value;

use ci_pod_webhook_core::admission::{self, PodReview, Review};
use ci_pod_webhook_core::answer::{self, Answer, Outcome};
use ci_pod_webhook_core::explain::{self, Subject};
use ci_pod_webhook_core::mutate::view::Object;
use ci_pod_webhook_core::mutate::{NamespaceFacts, Pod, SkipReason};
use ci_pod_webhook_core::policy::Policy;

use super::{Labels, MutateArgs, load_policy};

/// Exit status of `mutate` when the policy denies the pod (for a List: any item), the
/// answer printed all the same, so that a CI job can gate on it; 1 stays "could not run",
/// 2 "bad arguments".
pub const EXIT_DENIED: u8 = 3;

pub fn mutate(args: &MutateArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.policy.as_deref())?;
    let input = read_input(args.file.as_deref())?;
    let document = parse_document(&input)?;
    let facts = match &args.namespace_labels {
        Some(labels) => NamespaceFacts::Labels(&labels.0),
        None => NamespaceFacts::TrustSelector,
    };
    let denied = match document.get("kind").and_then(Value::as_str) {
        Some(kind @ ("List" | "PodList")) => {
            let kind = kind.to_string();
            let Some(Value::Array(items)) = document.get("items") else {
                bail!("the input is a {kind} without an items list");
            };
            list(&policy, facts, items, args, out)?
        }
        _ => {
            let review = as_review(document, args)?;
            one(&policy, facts, &review, args, out)?
        }
    };
    Ok(if denied {
        ExitCode::from(EXIT_DENIED)
    } else {
        ExitCode::SUCCESS
    })
}

/// One review: the AdmissionReview response as JSON, or the explanation. True when the
/// pod is denied.
fn one(
    policy: &Policy,
    facts: NamespaceFacts<'_>,
    review: &Value,
    args: &MutateArgs,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let body = serde_json::to_vec(review)?;
    let parsed = admission::parse(&body).context("the input is not a usable AdmissionReview")?;
    let answer = answer::decide(policy, facts, &parsed.request).context("cannot read the pod")?;
    if let (Some(SkipReason::NamespaceNotOptedIn), Some(labels)) =
        (answer.skip_reason(), &args.namespace_labels)
    {
        eprintln!("{}", not_opted_in_note(policy, labels));
    }
    if args.explain {
        let subject = subject(&parsed, &answer)?;
        out.write_all(explain::render(policy, &subject, &answer).as_bytes())?;
    } else {
        let response: Value = serde_json::from_slice(&admission::encode(&parsed, &answer))?;
        serde_json::to_writer_pretty(&mut *out, &response)?;
        writeln!(out)?;
    }
    // In warn mode the pod is allowed: a would-deny does not fail the command.
    Ok(answer.outcome == Outcome::Denied)
}

/// What an explanation names: the pod and its namespace, and the values it set that its
/// class would have set otherwise.
fn subject<'r>(review: &'r Review<'_>, answer: &Answer<'_>) -> anyhow::Result<Subject<'r>> {
    let read;
    let pod = match (&review.request.pod, review.request.object) {
        (Some(pod), _) => pod,
        (None, Some(raw)) => {
            let Object(pod) = serde_json::from_str::<Object<Pod<'_>>>(raw.get())
                .context("cannot read the pod")?;
            read = pod;
            &read
        }
        (None, None) => &Pod::default(),
    };
    let meta = pod.meta();
    let name = [&meta.name, &meta.generate_name]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .map(|n| n.to_string())
        .unwrap_or_default();
    Ok(Subject {
        namespace: review.namespace(),
        pod: name,
        kept: explain::kept(answer, pod),
    })
}

/// Why `--namespace-labels` left the pod alone: without the opt-in label the policy does
/// not apply, and a class label beside it is not used either.
fn not_opted_in_note(policy: &Policy, labels: &Labels) -> String {
    let opt_in = format!(
        "{}={}",
        policy.keys.opt_in,
        ci_pod_webhook_core::policy::OPT_IN_VALUE
    );
    let mut note = format!(
        "note: --namespace-labels has no {opt_in}, so the namespace is not opted in and the pod is left unchanged"
    );
    if let Some(class) = labels.0.get(&policy.keys.runner_class) {
        note.push_str(&format!(
            " (the class label {}={class} is not used either)",
            policy.keys.runner_class
        ));
    }
    note.push_str(&format!("; to preview the policy, add {opt_in}"));
    note
}

/// What became of one item of a List, for the summary table.
struct Row {
    pod: String,
    class: String,
    changes: String,
    result: String,
}

/// Every item explained, then one line per item.
fn list(
    policy: &Policy,
    facts: NamespaceFacts<'_>,
    items: &[Value],
    args: &MutateArgs,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let mut rows = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let row = match item_review(item, args) {
            Ok(review) => {
                let body = serde_json::to_vec(&review)?;
                let decided = admission::parse(&body)
                    .map_err(anyhow::Error::from)
                    .and_then(|parsed| {
                        let answer = answer::decide(policy, facts, &parsed.request)?;
                        let text = explain::render(policy, &subject(&parsed, &answer)?, &answer);
                        Ok((text, row(&parsed, &answer)))
                    });
                match decided {
                    Ok((text, row)) => {
                        writeln!(out, "--- item {index}")?;
                        out.write_all(text.as_bytes())?;
                        row
                    }
                    Err(e) => unreadable(index, item, &format!("{e:#}"), out)?,
                }
            }
            Err(e) => unreadable(index, item, &format!("{e:#}"), out)?,
        };
        rows.push(row);
    }
    writeln!(out, "---")?;
    table(&rows, out)?;
    Ok(rows.iter().any(|r| r.result == DENIED))
}

/// The RESULT cell of a denied item.
const DENIED: &str = "DENIED";
/// The RESULT cells of warn mode: allowed unchanged, enforce would have acted.
const WOULD_DENY: &str = "would deny (warn)";
const WOULD_MUTATE: &str = "would mutate (warn)";

fn row(review: &Review<'_>, answer: &Answer<'_>) -> Row {
    let name = match answer.pod() {
        "" => review.request.name.as_deref().unwrap_or(""),
        name => name,
    };
    let result = match answer.outcome {
        Outcome::Skipped => match answer.skip_reason() {
            Some(reason) => format!("skipped ({})", reason.as_str()),
            None => "skipped".to_string(),
        },
        Outcome::Denied => DENIED.into(),
        Outcome::WouldDeny => WOULD_DENY.into(),
        Outcome::WouldMutate => WOULD_MUTATE.into(),
        Outcome::Mutated => "mutated".into(),
        Outcome::Unchanged | Outcome::Invalid => "unchanged".into(),
    };
    Row {
        pod: format!("{}/{name}", review.namespace()),
        class: answer.class().unwrap_or("-").to_string(),
        changes: answer
            .changes()
            .map_or_else(|| "-".to_string(), |p| p.len().to_string()),
        result,
    }
}

/// An item that is not a readable pod: said in its place, and in the table.
fn unreadable(
    index: usize,
    item: &Value,
    error: &str,
    out: &mut impl Write,
) -> anyhow::Result<Row> {
    writeln!(out, "--- item {index}")?;
    writeln!(out, "error:     {error}")?;
    let name = item
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let namespace = item
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("-");
    Ok(Row {
        pod: format!("{namespace}/{name}"),
        class: "-".into(),
        changes: "-".into(),
        result: "error (see above)".into(),
    })
}

fn table(rows: &[Row], out: &mut impl Write) -> anyhow::Result<()> {
    let header = ["POD", "CLASS", "CHANGES", "RESULT"];
    let cells: Vec<[&str; 4]> = rows
        .iter()
        .map(|r| [r.pod.as_str(), &r.class, &r.changes, &r.result])
        .collect();
    super::write_table(out, &header, &cells)?;
    let count = |result: &str| rows.iter().filter(|r| r.result == result).count();
    writeln!(
        out,
        "{} pods: {} mutated, {} unchanged, {} denied, {} skipped, {} unreadable",
        rows.len(),
        count("mutated"),
        count("unchanged"),
        count(DENIED),
        rows.iter()
            .filter(|r| r.result.starts_with("skipped"))
            .count(),
        count("error (see above)")
    )?;
    let (would_mutate, would_deny) = (count(WOULD_MUTATE), count(WOULD_DENY));
    if would_mutate + would_deny > 0 {
        writeln!(
            out,
            "warn mode: {would_mutate} would be mutated and {would_deny} denied under enforce; all were allowed unchanged"
        )?;
    }
    Ok(())
}

/// A List item as a review: a Pod (kind `Pod`, or none as in a `PodList`).
fn item_review(item: &Value, args: &MutateArgs) -> anyhow::Result<Value> {
    match item.get("kind").and_then(Value::as_str) {
        Some("Pod") | None => as_review(item.clone(), args),
        Some(other) => bail!("a {other}, not a Pod"),
    }
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

/// An AdmissionReview as it is, or a Pod wrapped in a CREATE review.
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
            let review = PodReview::create(&namespace, &document)
                .by(args.user.as_deref().unwrap_or(""))
                .to_value();
            Ok(review)
        }
        Some(other) => bail!(
            "the input is a {other}; give an AdmissionReview, a Pod, or a List of pods (kubectl get pods -o json)"
        ),
        None => bail!(
            "the input has no kind and no spec; give an AdmissionReview, a Pod, or a List of pods (kubectl get pods -o json)"
        ),
    }
}
