use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetStatus};
use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec, PodTemplateSpec, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::doctor::report::Status;
use crate::doctor::test_support::{labels, named};

const CI: (&str, &str) = ("node-role.skatelescope.org/ci-worker", "true");
const GPU: (&str, &str) = ("nvidia.com/gpu", "true");

fn node(name: &str, label_pairs: &[(&str, &str)]) -> Node {
    Node {
        metadata: named(name, label_pairs),
        ..Node::default()
    }
}

fn tainted(mut node: Node, key: &str, effect: &str) -> Node {
    node.spec
        .get_or_insert_with(NodeSpec::default)
        .taints
        .get_or_insert_with(Vec::new)
        .push(Taint {
            key: key.into(),
            value: None,
            effect: effect.into(),
            time_added: None,
        });
    node
}

fn with_gpus(mut node: Node, count: &str) -> Node {
    node.status = Some(NodeStatus {
        allocatable: Some(BTreeMap::from([(
            "nvidia.com/gpu".to_string(),
            Quantity(count.into()),
        )])),
        ..NodeStatus::default()
    });
    node
}

fn gpu_node(name: &str) -> Node {
    with_gpus(
        tainted(node(name, &[CI, GPU]), "nvidia.com/gpu", "NoSchedule"),
        "1",
    )
}

fn lines<'c>(checks: &'c [Check], class: &str) -> Vec<(Status, &'c str)> {
    let prefix = format!("class {class}:");
    checks
        .iter()
        .filter(|c| c.message.starts_with(&prefix))
        .map(|c| (c.status, c.message.as_str()))
        .collect()
}

const RUNTIME: &[String] = &[];

fn nvidia() -> Vec<String> {
    vec!["nvidia".to_string()]
}

#[test]
fn a_cluster_with_ci_and_gpu_nodes_passes_every_class() {
    let policy = Policy::embedded();
    let nodes = [node("ci-1", &[CI]), gpu_node("gpu-1")];
    let runtime = nvidia();
    let checks = classes(&policy, &nodes, Ok(&runtime));
    assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
    assert_eq!(
        lines(&checks, "k8srunner-gpu-v100"),
        [
            (
                Status::Ok,
                "class k8srunner-gpu-v100: 1 node(s) can run its job pods (gpu-1)"
            ),
            (
                Status::Ok,
                "class k8srunner-gpu-v100: 1 node(s) with allocatable nvidia.com/gpu"
            ),
            (
                Status::Ok,
                "class k8srunner-gpu-v100: RuntimeClass nvidia exists"
            ),
        ]
    );
}

#[test]
fn no_labelled_node_means_every_job_pod_stays_pending() {
    let policy = Policy::embedded();
    let checks = classes(&policy, &[node("worker", &[])], Ok(RUNTIME));
    let check = &checks[0];
    assert_eq!(check.status, Status::Failure);
    assert_eq!(
        check.message,
        "class k8srunner: no node can run its job pods"
    );
    assert_eq!(
        check.hint.as_deref(),
        Some(
            "every job pod of class k8srunner would stay Pending: no node is labelled node-role.skatelescope.org/ci-worker=true"
        )
    );
    assert_eq!(
        check.fix.as_deref(),
        Some("kubectl label node <node> node-role.skatelescope.org/ci-worker=true")
    );
}

#[test]
fn an_untolerated_taint_or_a_cordon_is_named_with_its_fix() {
    let policy = Policy::embedded();
    let checks = classes(
        &policy,
        &[tainted(node("ci-1", &[CI]), "dedicated", "NoSchedule")],
        Ok(RUNTIME),
    );
    assert_eq!(checks[0].status, Status::Failure);
    assert!(
        checks[0]
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("dedicated:NoSchedule")),
        "{checks:?}"
    );
    assert!(
        checks[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("kubectl taint node ci-1 dedicated:NoSchedule-"))
    );
    // PreferNoSchedule never keeps a pod Pending.
    let soft = classes(
        &policy,
        &[tainted(
            node("ci-1", &[CI]),
            "dedicated",
            "PreferNoSchedule",
        )],
        Ok(RUNTIME),
    );
    assert_eq!(soft[0].status, Status::Ok);
    let mut cordoned = node("ci-1", &[CI]);
    cordoned.spec = Some(NodeSpec {
        unschedulable: Some(true),
        ..NodeSpec::default()
    });
    let checks = classes(&policy, &[cordoned], Ok(RUNTIME));
    assert_eq!(checks[0].fix.as_deref(), Some("kubectl uncordon ci-1"));
}

#[test]
fn a_gpu_class_needs_allocatable_gpus_and_its_runtime_class() {
    let policy = Policy::embedded();
    let no_plugin = with_gpus(
        tainted(node("gpu-1", &[CI, GPU]), "nvidia.com/gpu", "NoExecute"),
        "0",
    );
    let checks = classes(&policy, &[no_plugin], Ok(RUNTIME));
    let gpu = lines(&checks, "k8srunner-gpu-v100");
    assert_eq!(
        gpu[0].0,
        Status::Ok,
        "the GPU taint is tolerated whatever its effect"
    );
    assert_eq!(
        gpu[1],
        (
            Status::Failure,
            "class k8srunner-gpu-v100: none of its nodes has 1 allocatable nvidia.com/gpu"
        )
    );
    assert_eq!(
        gpu[2],
        (
            Status::Failure,
            "class k8srunner-gpu-v100: RuntimeClass nvidia does not exist"
        )
    );
    let forbidden = classes(
        &policy,
        &[gpu_node("gpu-1")],
        Err("runtimeclasses is forbidden"),
    );
    assert!(
        lines(&forbidden, "k8srunner-gpu-v100")[2]
            .1
            .contains("cannot list RuntimeClasses")
    );
}

fn daemon_set(selector: &[(&str, &str)], desired: i32, ready: i32) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("ci-dind".into()),
            namespace: Some("ci-dind".into()),
            ..ObjectMeta::default()
        },
        spec: Some(DaemonSetSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    node_selector: Some(labels(selector)),
                    tolerations: Some(vec![Toleration {
                        key: Some("nvidia.com/gpu".into()),
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    ..PodSpec::default()
                }),
                ..PodTemplateSpec::default()
            },
            ..DaemonSetSpec::default()
        }),
        status: Some(DaemonSetStatus {
            desired_number_scheduled: desired,
            number_ready: ready,
            ..DaemonSetStatus::default()
        }),
    }
}

#[test]
fn the_docker_daemon_must_cover_every_ci_node() {
    let policy = Policy::embedded();
    let nodes = [node("ci-1", &[CI]), gpu_node("gpu-1"), node("web", &[])];
    let good = daemon_set(&[CI], 2, 2);
    let checks = docker_daemon(&policy, &nodes, Ok(Some(&good)), "ci-dind/ci-dind");
    assert_eq!(checks.len(), 1);
    assert_eq!(
        (checks[0].status, checks[0].message.as_str()),
        (
            Status::Ok,
            "DaemonSet ci-dind/ci-dind covers all 2 CI node(s)"
        )
    );

    let elsewhere = daemon_set(&[("role", "docker")], 0, 0);
    let checks = docker_daemon(&policy, &nodes, Ok(Some(&elsewhere)), "ci-dind/ci-dind");
    assert_eq!(checks[0].status, Status::Failure);
    assert_eq!(
        checks[0].message,
        "DaemonSet ci-dind/ci-dind does not run on 2 of 2 CI node(s): ci-1, gpu-1"
    );

    let starting = daemon_set(&[CI], 2, 1);
    let checks = docker_daemon(&policy, &nodes, Ok(Some(&starting)), "ci-dind/ci-dind");
    assert_eq!(checks[1].status, Status::Warning);
    assert_eq!(checks[1].message, "Docker daemon ready on 1 of 2 node(s)");

    let missing = docker_daemon(&policy, &nodes, Ok(None), "ci-dind/ci-dind");
    assert_eq!(missing[0].status, Status::Failure);
    assert_eq!(
        missing[0].fix.as_deref(),
        Some("kubectl apply -k manifests/node-docker")
    );
}

#[test]
fn tcp_and_off_modes_need_no_socket_daemon_check() {
    let text =
        ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML.replace("  mode: socket", "  mode: off");
    let policy = Policy::parse(&text, "off.yaml").expect("policy");
    assert!(docker_daemon(&policy, &[node("ci-1", &[CI])], Ok(None), "ci-dind/ci-dind").is_empty());
}

fn with_cpus(mut node: Node, cpus: &str) -> Node {
    node.status
        .get_or_insert_with(NodeStatus::default)
        .allocatable
        .get_or_insert_with(BTreeMap::new)
        .insert("cpu".into(), Quantity(cpus.into()));
    node
}

/// The CI nodes and their allocatable CPUs, a class, and the warning about it.
type CpuCase<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);

#[test]
fn a_cpu_limit_above_the_cpus_of_a_classs_nodes_is_a_warning() {
    let policy = Policy::embedded();
    let cases: &[CpuCase] = &[
        (&[("ci-1", "30")], "k8srunner", None),
        (
            &[("ci-big", "30"), ("ci-small", "2")],
            "k8srunner",
            Some(
                "class k8srunner: CPU limit above what 1 of its 2 node(s) can give (ci-small: 2 allocatable CPUs; limits build 5, helper 3, services 3)",
            ),
        ),
        (
            &[("ci-4", "4"), ("ci-3500m", "3500m")],
            "k8srunner",
            Some(
                "class k8srunner: CPU limit above what 2 of its 2 node(s) can give (ci-3500m, ci-4: 3500m allocatable CPUs; limits build 5)",
            ),
        ),
        // No CPU limit for build: JOB_CPUS is the node's own; helper and services
        // still have one.
        (
            &[("ci-2", "2")],
            "k8srunner-large",
            Some(
                "class k8srunner-large: CPU limit above what 1 of its 1 node(s) can give (ci-2: 2 allocatable CPUs; limits helper 3, services 3)",
            ),
        ),
        (&[("ci-8", "8")], "k8srunner-large", None),
    ];
    for (ci_nodes, class, warning) in cases {
        let nodes: Vec<Node> = ci_nodes
            .iter()
            .map(|(n, cpus)| with_cpus(node(n, &[CI]), cpus))
            .collect();
        let checks = classes(&policy, &nodes, Ok(RUNTIME));
        let warnings: Vec<&str> = lines(&checks, class)
            .into_iter()
            .filter(|(s, _)| *s == Status::Warning)
            .map(|(_, m)| m)
            .collect();
        assert_eq!(
            warnings,
            warning.iter().copied().collect::<Vec<_>>(),
            "{ci_nodes:?}"
        );
    }
}

#[test]
fn the_cpu_warning_says_why_and_how_to_fix_it() {
    let policy = Policy::embedded();
    let checks = classes(&policy, &[with_cpus(node("vm", &[CI]), "2")], Ok(RUNTIME));
    let warning = checks
        .iter()
        .find(|c| c.status == Status::Warning && c.message.starts_with("class k8srunner:"))
        .expect("a warning");
    assert_eq!(
        warning.hint.as_deref(),
        Some(
            "the limit is never reached on vm, and JOB_CPUS promises its jobs more CPUs than it has (make -j$JOB_CPUS oversubscribes it)"
        )
    );
    assert_eq!(
        warning.fix.as_deref(),
        Some(
            "lower the CPU limits of class k8srunner in the policy to at most 2, or keep its jobs off the smaller nodes (the class's nodeSelector)"
        )
    );
}

#[test]
fn nodes_that_report_no_cpus_raise_no_cpu_warning() {
    let policy = Policy::embedded();
    let checks = classes(
        &policy,
        &[node("ci-1", &[CI]), gpu_node("gpu-1")],
        Ok(RUNTIME),
    );
    assert!(
        checks.iter().all(|c| c.status != Status::Warning),
        "{checks:#?}"
    );
}

#[test]
fn a_host_daemon_socket_needs_no_daemon_set_and_says_what_is_not_checked() {
    // SKA's policies: the host's own docker-for-gitlab daemon, its socket file mounted.
    let text = include_str!("../../../examples/policies/ska-techops.yaml");
    let policy = Policy::parse(text, "ska-techops.yaml").expect("policy");
    let nodes = [node("ci-1", &[CI])];
    for daemon_set in [Ok(None), Err("forbidden")] {
        let checks = docker_daemon(&policy, &nodes, daemon_set, "ci-dind/ci-dind");
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert_eq!(checks[0].status, Status::Ok, "{checks:?}");
        assert!(
            checks[0]
                .message
                .starts_with("socket mode on a host daemon: /var/run/docker-for-gitlab.sock"),
            "{checks:?}"
        );
        let hint = checks[0].hint.as_deref().unwrap_or_default();
        assert!(hint.contains("cannot see"), "{hint}");
        assert!(hint.contains("mount: file"), "{hint}");
    }
}
