//! Job pods of GitLab Runner 16.5 (`svc-0`) and 17.9 (services named after their aliases,
//! `db` and `cache`) run to completion on the node with their class in force: every
//! container's cgroup (read inside it and on the host) holds the class's limits, and
//! `build` sees the class and its limits in the limitsEnv variables, which the kubelet
//! resolves. A class with no CPU or memory limit gets the node's allocatable amounts.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{NO_LIMITS, ska};
use crate::support::e2e::*;

const GIB: u64 = 1 << 30;
const POLICY: &str = "ska";
/// examples/policies/ska-dp.yaml's default class: 3 CPUs and 1Gi for every container.
const SKA_DP: &str = "ska-k8srunner-dp";
const SKA_DP_LIMITS: Limits = Limits {
    memory_bytes: Some(GIB),
    cpu_millis: Some(3000),
};

/// A fixture's pod whose containers print their limits and wait: the init container for
/// `go-init`, the others for `go`, both files in the runner's `scripts` emptyDir.
fn reporting_pod(fixture: &str, name: &str) -> Value {
    let pod = job_pod(fixture);
    let dir = scripts_dir(&pod);
    let init = format!("{PRINT_FACTS}{}", wait_for_file(&format!("{dir}/go-init")));
    let rest = format!("{PRINT_FACTS}{}", wait_for_file(&format!("{dir}/go")));
    let names: Vec<String> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod["spec"][l].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let scripts: Vec<(&str, &str)> = names
        .iter()
        .map(|n| {
            let script = if n == "init-permissions" {
                &init
            } else {
                &rest
            };
            (n.as_str(), script.as_str())
        })
        .collect();
    runnable(fixture, name, &scripts)
}

/// Every container's facts, inside and on the host, in container order, as the pod
/// runs: the init container's first (it must finish before the others start).
async fn facts_of(node: &Node, ns: &TestNamespace<'_>, name: &str) -> Vec<(String, Facts, Limits)> {
    let stored = ns.get_pod(name).await;
    let uid = stored["metadata"]["uid"].as_str().expect("uid").to_string();
    let scripts = node.empty_dir(&uid, "scripts");
    let mut all = Vec::new();
    for (list, go) in [("initContainers", "go-init"), ("containers", "go")] {
        let containers: Vec<String> = stored["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["name"].as_str().expect("name").to_string())
            .collect();
        for container in &containers {
            let log = ns.wait_for_log(name, container, "FACTS ").await;
            // The kubelet reports the container a moment after it runs.
            let pod = ns
                .wait_for_pod(name, "reporting the container", POD_PATIENCE, |pod| {
                    running(pod, container)
                })
                .await;
            let host = node.host_limits(&container_id(&pod, container));
            all.push((container.clone(), Facts::from_log(&log), host));
        }
        std::fs::write(scripts.join(go), b"").expect("write the go file");
    }
    all
}

fn limits_env(class: &str, cpus: u64, memory: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("JOB_RUNNER_CLASS".into(), class.into()),
        ("JOB_CPUS".into(), cpus.to_string()),
        ("JOB_CPU_MILLICORES".into(), (cpus * 1000).to_string()),
        ("JOB_MEMORY_BYTES".into(), memory.to_string()),
    ])
}

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet and kube-controller-manager, and the packages docs/e2e.md lists"]
async fn runner_job_pods_run_with_their_class_in_their_cgroups_and_environment() {
    let node = Node::take_turn().await;
    // The policy mounts the host daemon's socket (type Socket): without the daemon, pods
    // would not start.
    let host = node.host_docker().await;
    node.webhook(POLICY, &ska(host.gid)).await;
    let ns = node.namespace("node-job-pods", POLICY, &[]).await;
    let unlimited = node
        .namespace(
            "node-job-pods-no-limits",
            POLICY,
            &[(RUNNER_CLASS, NO_LIMITS)],
        )
        .await;
    let pods = [
        (&ns, "gitlab-runner-16.5-job-pod.json", "runner-16-5"),
        (&ns, "gitlab-runner-17.9-alias-services.json", "runner-17-9"),
        (
            &unlimited,
            "gitlab-runner-17.9-job-pod.json",
            "runner-no-limits",
        ),
    ];
    for (ns, fixture, name) in pods {
        let stored = ns
            .create_pod(&reporting_pod(fixture, name))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        assert!(
            annotations(&stored).contains_key("ci.skao.int/class"),
            "{name} was not patched: {:?}",
            annotations(&stored)
        );
    }

    // The class's limits in every container of both runners' pods: init-permissions,
    // build, helper and the services (16.5's svc-0, 17.9's db and cache).
    for name in ["runner-16-5", "runner-17-9"] {
        let facts = facts_of(&node, &ns, name).await;
        let seen: Vec<&str> = facts.iter().map(|(c, _, _)| c.as_str()).collect();
        let expected: &[&str] = if name == "runner-16-5" {
            &["init-permissions", "build", "helper", "svc-0"]
        } else {
            &["init-permissions", "build", "helper", "db", "cache"]
        };
        assert_eq!(seen, expected, "{name}'s containers");
        for (container, inside, host) in &facts {
            assert_eq!(inside.limits, SKA_DP_LIMITS, "{name} {container}, inside");
            assert_eq!(*host, SKA_DP_LIMITS, "{name} {container}, host cgroup");
            let env = &inside.env;
            if container == "build" {
                assert_eq!(*env, limits_env(SKA_DP, 3, GIB), "{name} build's limitsEnv");
            } else {
                assert!(
                    env.values().all(String::is_empty),
                    "{name} {container}: {env:?}"
                );
            }
        }
        let done = ns.finished(name).await;
        assert_eq!(
            done["status"]["phase"], "Succeeded",
            "{name}: {:#}",
            done["status"]
        );
    }

    // No limit: the cgroup has none, and the kubelet resolves the limitsEnv variables to
    // the node's allocatable CPUs and memory.
    let facts = facts_of(&node, &unlimited, "runner-no-limits").await;
    let (_, build, host) = facts.iter().find(|(c, _, _)| c == "build").expect("build");
    let none = Limits {
        memory_bytes: None,
        cpu_millis: None,
    };
    assert_eq!(build.limits, none, "build without limits, inside");
    assert_eq!(*host, none, "build without limits, host cgroup");
    assert_eq!(
        build.env,
        limits_env(NO_LIMITS, node.allocatable_cpus, node.allocatable_memory),
        "the limitsEnv variables of a class without limits"
    );
    let done = unlimited.finished("runner-no-limits").await;
    assert_eq!(done["status"]["phase"], "Succeeded", "{:#}", done["status"]);
}
