//! docs/ska-migration.md, run as it is written, on a real API server with SKA's shapes
//! (issue 26, "Done means"): dp's policy (examples/policies/ska-dp.yaml), its two 16.x
//! runners' job pods already running in `gitlab` before anything is installed, CI and
//! A100 nodes, the host's `docker-for-gitlab` daemon in the policy. Every shell command
//! the test runs is taken from the guide (the test fails if the guide no longer has it)
//! and run by bash with the admin kubeconfig, `ci-pod-webhook` on PATH and the policy
//! file in the working directory. What the guide leaves to the admin's tooling (deploy
//! the webhook, apply an edited policy, run a pipeline) the harness does: the webhook
//! runs as a process registered with manifests/base's configuration and reads the file
//! the guide edits; job pods are created as the runners create them. At every step the
//! live gauge and `audit -o json` must agree; the walk ends with both classes enforced.
//! A control plane of its own: it registers its own webhook and reloads its policy.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use ci_pod_webhook_core::policy::Policy;
use serde_json::{Value, json};

use crate::support::e2e::*;

const GUIDE: &str = "docs/ska-migration.md";
const DP: &str = "xz3kq9ab";
const A100: &str = "a1b2c3d4";
const CI: (&str, &str) = ("node-role.skatelescope.org/ci-worker", "true");

fn guide() -> String {
    std::fs::read_to_string(repo_file(GUIDE)).expect("the guide")
}

/// A command of the guide, checked to be there word for word.
fn from_guide(command: &str) -> &str {
    assert!(
        guide().contains(command),
        "{GUIDE} no longer says `{command}`: the walkthrough follows the guide"
    );
    command
}

/// Runs a shell command of the guide as an admin would: bash, the admin kubeconfig,
/// `ci-pod-webhook` on PATH, in `dir` (where the policy file is).
fn run(cp: &ControlPlane, dir: &Path, command: &str) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ci-pod-webhook"));
    let path = format!(
        "{}:{}",
        bin.parent().expect("a directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", command])
        .current_dir(dir)
        .env("PATH", path)
        .env("KUBECONFIG", cp.kubeconfig())
        .env_remove("CI_POD_WEBHOOK_POLICY")
        .output()
        .expect("bash")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A 16.x job pod of runner `token`, as GitLab Runner creates it (name and `pod` label
/// from the token, the runner's own resources).
fn runner_pod(token: &str, n: u32) -> Value {
    let mut pod = job_pod("gitlab-runner-16.5-job-pod.json");
    let stem = format!("runner-{token}-project-4242-concurrent-{n}");
    pod["metadata"]["name"] = json!(format!("{stem}-x7k2m"));
    pod["metadata"]["labels"]["pod"] = json!(stem);
    if token == A100 {
        let build = pod["spec"]["containers"]
            .as_array_mut()
            .and_then(|c| c.iter_mut().find(|c| c["name"] == "build"))
            .expect("build");
        build["resources"]["limits"]["nvidia.com/gpu"] = json!("1");
    }
    pod
}

/// The job's override annotation that no policy accepts.
fn with_lots(mut pod: Value) -> Value {
    pod["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = json!("lots");
    pod
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string()
}

/// Applies the edited policy (the file the webhook reads) and waits until the webhook
/// says it is in force.
async fn apply_policy(webhook: &Webhook, file: &Path, text: &str) {
    std::fs::write(file, text).expect("write the policy");
    let hash = Policy::parse(text, "ska-dp.yaml").expect("valid").hash;
    let start = Instant::now();
    while !webhook
        .log_lines()
        .iter()
        .any(|l| l["message"] == "policy in force" && l["hash"] == hash.as_str())
    {
        assert!(start.elapsed() < PATIENCE, "policy {hash} not in force");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The gauge agrees with audit after `step`; their counts.
async fn agree(cp: &ControlPlane, webhook: &Webhook, policy: &Path, step: &str) -> Counts {
    gauge_agrees_with_audit(cp, webhook, policy, step).await;
    gauge_counts(webhook).await
}

fn count(counts: &Counts, class: &str, verdict: &str) -> u64 {
    counts
        .get(&(class.to_string(), verdict.to_string()))
        .copied()
        .unwrap_or(0)
}

/// Asserts the gauge's count of each (class, verdict) named.
fn expect_counts(counts: &Counts, expected: &[(&str, &str, u64)]) {
    for (class, verdict, n) in expected {
        assert_eq!(
            count(counts, class, verdict),
            *n,
            "{class} {verdict}: {counts:?}"
        );
    }
}

/// Runs `args` with stdout a pipe whose reader has gone, as `| head` leaves it.
fn into_closed_pipe(cp: &ControlPlane, dir: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    std::process::Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
        .args(args)
        .current_dir(dir)
        .env("KUBECONFIG", cp.kubeconfig())
        .stdout(writer)
        .output()
        .expect("run")
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn the_ska_guide_run_literally_reaches_enforce_with_audit_and_the_gauge_agreeing() {
    let cp = ControlPlane::own("ska-walkthrough", Options::default()).await;
    let dir = cp.dir.join("admin");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let policy = dir.join("ska-dp.yaml");

    // SKA's cluster before anything: CI and A100 nodes, the runners' jobs in `gitlab`.
    cp.scheduler().await;
    cp.create_node("ci-1", json!({CI.0: CI.1}), json!([]), 0)
        .await;
    cp.create_node(
        "a100-1",
        json!({CI.0: CI.1, "nvidia.com/gpu": "true"}),
        json!([{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]),
        4,
    )
    .await;
    let gitlab = cp.namespace("gitlab", &[]).await;
    let lots = with_lots(runner_pod(DP, 2));
    for pod in [runner_pod(DP, 0), runner_pod(A100, 0), lots.clone()] {
        gitlab.create_pod(&pod).await.expect("a job pod");
    }

    // 1. Fill in the policy.
    let output = run(
        &cp,
        &dir,
        from_guide(
            r"kubectl -n gitlab get pods -o name | sed -n 's|pod/runner-\([^-]*\)-project-.*|\1|p' | sort -u",
        ),
    );
    assert_eq!(
        text(&output),
        format!("{A100}\n{DP}\n"),
        "the runners' tokens"
    );
    let example =
        std::fs::read_to_string(repo_file("examples/policies/ska-dp.yaml")).expect("ska-dp.yaml");
    std::fs::write(&policy, &example).expect("copy the policy");
    let check = from_guide("ci-pod-webhook check-policy ska-dp.yaml");
    let output = run(&cp, &dir, check);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("todo0101 is a placeholder"),
        "{}",
        text(&output)
    );
    let filled = example.replace("todo0101", DP).replace("todo0102", A100);
    std::fs::write(&policy, &filled).expect("fill in the policy");
    let output = run(&cp, &dir, check);
    assert!(!text(&output).contains("placeholder"), "{}", text(&output));

    // 2. Check the policy against the jobs running today.
    let output = run(
        &cp,
        &dir,
        from_guide(
            "kubectl -n gitlab get pods -o json | ci-pod-webhook mutate --policy ska-dp.yaml --namespace-labels ci.skao.int/pod-policy=enabled -",
        ),
    );
    let summary = text(&output);
    assert_eq!(
        output.status.code(),
        Some(3),
        "one job is denied: {summary}"
    );
    for (pod, class, result) in [
        (name(&runner_pod(DP, 0)), "ska-k8srunner-dp", "mutated"),
        (
            name(&runner_pod(A100, 0)),
            "ska-k8srunner-dp-gpu-a100",
            "mutated",
        ),
        (name(&lots), "ska-k8srunner-dp", "DENIED"),
    ] {
        assert!(
            summary
                .lines()
                .any(|l| l.starts_with(&format!("gitlab/{pod}"))
                    && l.contains(class)
                    && l.trim_end().ends_with(result)),
            "{pod} {class} {result}: {summary}"
        );
    }
    let output = run(
        &cp,
        &dir,
        from_guide("ci-pod-webhook audit --policy ska-dp.yaml -n gitlab"),
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("unpolicied,would-deny"),
        "{}",
        text(&output)
    );
    let output = run(
        &cp,
        &dir,
        from_guide("ci-pod-webhook audit --policy ska-dp.yaml -n gitlab --fail-on would-deny"),
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));

    // 3. Deploy the webhook.
    let output = run(
        &cp,
        &dir,
        from_guide("ci-pod-webhook doctor --pre --policy ska-dp.yaml"),
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("✔ socket mode on a host daemon: /var/run/docker-for-gitlab.sock"),
        "{}",
        text(&output)
    );
    let webhook = cp.start_webhook_with_policy(&policy).await;
    cp.register_webhook(&webhook).await;
    let counts = agree(&cp, &webhook, &policy, "the webhook deployed").await;
    assert!(counts.is_empty(), "gitlab has not opted in: {counts:?}");

    // 4.1 Warn for every class, then opt the namespace in.
    assert!(guide().contains("```yaml\n   enforcement: warn\n   ```"));
    let warn = filled.replacen(
        "prefix: ci.skao.int\n",
        "prefix: ci.skao.int\nenforcement: warn\n",
        1,
    );
    apply_policy(&webhook, &policy, &warn).await;
    let output = run(
        &cp,
        &dir,
        from_guide("kubectl label namespace gitlab ci.skao.int/pod-policy=enabled"),
    );
    assert!(output.status.success(), "{}", text(&output));
    let counts = agree(&cp, &webhook, &policy, "gitlab opts in, every class warns").await;
    expect_counts(
        &counts,
        &[
            ("ska-k8srunner-dp", "would-mutate", 1),
            ("ska-k8srunner-dp", "would-deny", 1),
            ("ska-k8srunner-dp-gpu-a100", "would-mutate", 1),
            ("ska-k8srunner-dp", "unpolicied", 0),
        ],
    );
    // A new A100 job: stored as sent; each warning once, though both entries see it.
    let created = cp.kubectl(
        &["create", "-n", "gitlab", "-f", "-", "-o", "name"],
        Some(&serde_json::to_vec(&runner_pod(A100, 1)).expect("JSON")),
    );
    let stderr = String::from_utf8_lossy(&created.stderr).into_owned();
    assert!(created.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("Warning: "))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("warn mode, class ska-k8srunner-dp-gpu-a100")),
        "{stderr}"
    );
    let distinct: std::collections::BTreeSet<&&str> = warnings.iter().collect();
    assert_eq!(
        distinct.len(),
        warnings.len(),
        "a warning repeated: {stderr}"
    );
    let reviews = webhook.reviews("gitlab", 2).await;
    let warned = reviews
        .iter()
        .filter(|l| l["pod"] == name(&runner_pod(A100, 1)) && l["outcome"] == "would_mutate")
        .count();
    assert_eq!(
        warned, 1,
        "one entry warns about a GPU job pod: {reviews:#?}"
    );
    let output = run(
        &cp,
        &dir,
        from_guide("ci-pod-webhook audit --policy ska-dp.yaml"),
    );
    assert!(output.status.success(), "{}", text(&output));
    agree(&cp, &webhook, &policy, "a job created in warn mode").await;
    // `| head`: audit and doctor end quietly when their reader goes.
    for args in [
        &["audit", "--policy", "ska-dp.yaml"][..],
        &["doctor", "--pre", "--policy", "ska-dp.yaml"],
    ] {
        let output = into_closed_pipe(&cp, &dir, args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", text(&output));
        assert!(output.stderr.is_empty(), "{args:?}: {}", text(&output));
    }

    // 4.2 Enforce dp; 4.3 then the A100 class; 4.4 drop the top-level warn.
    assert!(guide().contains("     ska-k8srunner-dp:\n       enforcement: enforce"));
    assert!(guide().contains("`ska-k8srunner-dp-gpu-a100: enforcement: enforce`"));
    let dp_enforced = warn.replacen(
        "  ska-k8srunner-dp:\n",
        "  ska-k8srunner-dp:\n    enforcement: enforce\n",
        1,
    );
    apply_policy(&webhook, &policy, &dp_enforced).await;
    let counts = agree(&cp, &webhook, &policy, "the dp class enforces").await;
    expect_counts(
        &counts,
        &[
            ("ska-k8srunner-dp", "unpolicied", 2),
            ("ska-k8srunner-dp", "would-deny", 1),
            ("ska-k8srunner-dp-gpu-a100", "would-mutate", 2),
        ],
    );
    let admitted = gitlab
        .create_pod(&runner_pod(DP, 1))
        .await
        .expect("a dp job");
    assert_eq!(
        annotations(&admitted)["ci.skao.int/class"],
        "ska-k8srunner-dp"
    );
    let refused = gitlab.create_pod(&with_lots(runner_pod(DP, 3))).await;
    assert!(refused.is_err(), "an invalid override is refused now");
    let counts = agree(&cp, &webhook, &policy, "a dp job admitted").await;
    expect_counts(&counts, &[("ska-k8srunner-dp", "ok", 1)]);

    // 6. Verify on a live job (4.2: before the next class).
    let job = name(&admitted);
    let class = from_guide(
        r#"kubectl -n gitlab get pod <job pod> -o jsonpath='{.metadata.annotations.ci\.skao\.int/class}{"\n"}'"#,
    )
    .replace("<job pod>", &job);
    assert_eq!(text(&run(&cp, &dir, &class)), "ska-k8srunner-dp\n");
    let explain = from_guide(
        "kubectl -n gitlab get pod <job pod> -o json | ci-pod-webhook mutate --explain --policy ska-dp.yaml --namespace-labels ci.skao.int/pod-policy=enabled -",
    )
    .replace("<job pod>", &job);
    let output = run(&cp, &dir, &explain);
    assert!(output.status.success(), "{}", text(&output));
    let promised = from_guide("changes:   none (the pod already follows the policy)");
    assert!(text(&output).contains(promised), "{}", text(&output));

    let all_enforced = dp_enforced.replacen(
        "  ska-k8srunner-dp-gpu-a100:\n",
        "  ska-k8srunner-dp-gpu-a100:\n    enforcement: enforce\n",
        1,
    );
    apply_policy(&webhook, &policy, &all_enforced).await;
    let counts = agree(&cp, &webhook, &policy, "the A100 class enforces").await;
    expect_counts(&counts, &[("ska-k8srunner-dp-gpu-a100", "unpolicied", 2)]);
    let gpu_job = gitlab
        .create_pod(&runner_pod(A100, 2))
        .await
        .expect("an A100 job");
    assert_eq!(gpu_job["spec"]["runtimeClassName"], "nvidia");
    assert_eq!(gitlab.wait_for_binding(&name(&gpu_job)).await, "a100-1");
    let enforced = all_enforced.replacen("enforcement: warn\n", "", 1);
    apply_policy(&webhook, &policy, &enforced).await;
    let counts = agree(&cp, &webhook, &policy, "the top-level warn removed").await;
    expect_counts(
        &counts,
        &[
            ("ska-k8srunner-dp", "ok", 1),
            ("ska-k8srunner-dp-gpu-a100", "ok", 1),
        ],
    );
    assert!(
        counts.keys().all(|(_, v)| v != "would-mutate"),
        "every class enforces: {counts:?}"
    );

    // DP's GPU workloads in the namespaces its jobs make: placed, and on a GPU node.
    let mid = cp.namespace("ci-ska-mid-8d3f2a", &[]).await;
    let workload = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cbf-sim-0", "labels": {"app.kubernetes.io/name": "cbf-sim"}},
        "spec": {"containers": [{
            "name": "cuda", "image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        }]},
    });
    let stored = mid.create_pod(&workload).await.expect("a GPU workload");
    assert_eq!(stored["spec"]["runtimeClassName"], "nvidia", "{stored:#}");
    assert_eq!(mid.wait_for_binding("cbf-sim-0").await, "a100-1");

    // 6, again after the policy changed: only the hash of the policy, as the guide says.
    let output = run(&cp, &dir, &explain);
    assert!(output.status.success(), "{}", text(&output));
    let explained = text(&output);
    assert!(
        from_guide(
            "changes:   1\n  metadata.annotations[\"ci.skao.int/policy\"]: <old hash> → <new hash>"
        )
        .contains("changes:   1")
    );
    let changes: Vec<&str> = explained
        .lines()
        .skip_while(|l| !l.starts_with("changes:"))
        .take_while(|l| !l.starts_with("kept:") && !l.starts_with("result:"))
        .collect();
    assert_eq!(changes.len(), 2, "{explained}");
    assert_eq!(changes[0].trim_end(), "changes:   1");
    assert!(
        changes[1].starts_with("  metadata.annotations[\"ci.skao.int/policy\"]: "),
        "{explained}"
    );

    // 7. Roll back (now): the label goes, and with it the namespace from both.
    let output = run(
        &cp,
        &dir,
        from_guide("kubectl label namespace gitlab ci.skao.int/pod-policy-"),
    );
    assert!(output.status.success(), "{}", text(&output));
    let counts = agree(&cp, &webhook, &policy, "the rollback").await;
    assert!(counts.is_empty(), "{counts:?}");
}
