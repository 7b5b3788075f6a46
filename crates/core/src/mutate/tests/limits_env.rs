//! `limitsEnv`: the job's class and limits as variables in `build`.

use super::*;

fn names<'v>(pod: &'v Value, container: &str) -> Vec<&'v str> {
    env(pod, container).iter().map(|(n, _)| *n).collect()
}

fn var<'v>(pod: &'v Value, name: &str) -> &'v Value {
    env(pod, "build")
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in build"))
}

#[test]
fn build_learns_its_class_and_limits_from_the_downward_api() {
    let out = run(&job_pod());
    let pod = out.pod();
    assert_eq!(
        names(pod, "build"),
        [
            "CI",
            "DOCKER_HOST",
            "JOB_RUNNER_CLASS",
            "JOB_CPUS",
            "JOB_CPU_MILLICORES",
            "JOB_MEMORY_BYTES"
        ]
    );
    assert_eq!(
        var(pod, "JOB_RUNNER_CLASS"),
        &json!({"name": "JOB_RUNNER_CLASS", "value": "k8srunner"})
    );
    let field = |resource: &str, divisor: &str| json!({"resourceFieldRef": {"containerName": "build", "resource": resource, "divisor": divisor}});
    assert_eq!(var(pod, "JOB_CPUS")["valueFrom"], field("limits.cpu", "1"));
    assert_eq!(
        var(pod, "JOB_CPU_MILLICORES")["valueFrom"],
        field("limits.cpu", "1m")
    );
    assert_eq!(
        var(pod, "JOB_MEMORY_BYTES")["valueFrom"],
        field("limits.memory", "1")
    );
    // Only build: not helper, services or init containers.
    for other in ["helper", "svc-0", "init-permissions"] {
        assert!(container(pod, other).get("env").is_none(), "{other}");
    }
}

#[test]
fn gpu_classes_also_get_the_gpu_count_the_patch_leaves() {
    let pod = with_runner(job_pod(), "ska-k8srunner-dp-gpu-a100");
    let out = run(&pod);
    assert_eq!(
        var(out.pod(), "JOB_GPUS"),
        &json!({"name": "JOB_GPUS", "value": "1"})
    );
    // The override, and an existing limit (lowered to the ceiling), are what count.
    let out = run(&annotate(pod.clone(), &[("ci.skao.int/gpus", "3")]));
    assert_eq!(var(out.pod(), "JOB_GPUS")["value"], "3");
    let mut high = pod;
    high["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "8"}});
    let out = run(&high);
    assert_eq!(var(out.pod(), "JOB_GPUS")["value"], "4");
    // Not on a class without GPUs.
    assert!(!names(run(&job_pod()).pod(), "build").contains(&"JOB_GPUS"));
}

#[test]
fn a_variable_the_pod_sets_is_never_replaced() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "JOB_CPUS", "value": "2"},
        {"name": "CI", "value": "true"}
    ]);
    let out = run(&pod);
    let patched = out.pod();
    assert_eq!(
        var(patched, "JOB_CPUS"),
        &json!({"name": "JOB_CPUS", "value": "2"})
    );
    assert_eq!(
        names(patched, "build")
            .iter()
            .filter(|n| n.starts_with("JOB_"))
            .collect::<Vec<_>>(),
        [
            &"JOB_CPUS",
            &"JOB_RUNNER_CLASS",
            &"JOB_CPU_MILLICORES",
            &"JOB_MEMORY_BYTES"
        ]
    );
}

#[test]
fn variables_an_env_from_source_may_set_are_left_out_with_a_warning() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["envFrom"] = json!([
        {"prefix": "APP_", "configMapRef": {"name": "app"}},
        {"prefix": "JOB_CPU", "secretRef": {"name": "s"}}
    ]);
    let out = run(&pod);
    assert_eq!(
        names(out.pod(), "build"),
        ["CI", "DOCKER_HOST", "JOB_RUNNER_CLASS", "JOB_MEMORY_BYTES"]
    );
    assert!(out.warnings().contains(
        &"build: JOB_CPUS, JOB_CPU_MILLICORES not set: an envFrom source of the container may set them"
            .to_string()
    ));
    // A source with no prefix may set any name.
    pod["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "all"}}]);
    let out = run(&pod);
    assert_eq!(names(out.pod(), "build"), ["CI", "DOCKER_HOST"]);
}

#[test]
fn names_come_from_the_policy_and_can_be_turned_off() {
    let policy = policy_from(
        "defaultClass: a\nclasses:\n  a: { max: { cpu: null, memory: null } }\nlimitsEnv: { cpus: NPROC, cpuMillicores: null, memoryBytes: null, class: null }\n",
    );
    let out = run_with(&policy, &Req::default(), &job_pod());
    assert_eq!(names(out.pod(), "build"), ["CI", "DOCKER_HOST", "NPROC"]);
    let off = policy_from(
        "defaultClass: a\nclasses:\n  a: { max: { cpu: null, memory: null } }\nlimitsEnv: { enabled: false }\n",
    );
    let out = run_with(&off, &Req::default(), &job_pod());
    assert_eq!(names(out.pod(), "build"), ["CI", "DOCKER_HOST"]);
}

#[test]
fn a_build_container_without_env_gets_one_list_with_docker_and_limits() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]
        .as_object_mut()
        .expect("build")
        .remove("env");
    // run() checks that the patch applies and that a second run adds nothing.
    let out = run(&pod);
    assert_eq!(
        names(out.pod(), "build"),
        [
            "DOCKER_HOST",
            "JOB_RUNNER_CLASS",
            "JOB_CPUS",
            "JOB_CPU_MILLICORES",
            "JOB_MEMORY_BYTES"
        ]
    );
    // One `add` of the whole list: as many operations as with Docker's variable alone.
    let ops = |out: Out| match out {
        Out::Allow { ops, .. } => ops,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        ops(out),
        ops(run_with(&NO_LIMITS_ENV, &Req::default(), &pod))
    );
}

#[test]
fn limit_names_must_be_shell_names_outside_gitlab_and_docker_ones() {
    for (names, expected) in [
        (
            "{ cpus: CI_JOB_CPUS }",
            "starts with CI_, which GitLab reserves",
        ),
        (
            "{ cpus: GITLAB_CPUS }",
            "starts with GITLAB_, which GitLab reserves",
        ),
        (
            "{ cpus: 1CPUS }",
            "is not a variable name a shell can expand",
        ),
        (
            "{ cpus: JOB-CPUS }",
            "is not a variable name a shell can expand",
        ),
        (
            "{ cpus: DOCKER_HOST }",
            "is set by the webhook's docker section",
        ),
        (
            "{ cpus: X, gpus: X }",
            "X is already used by another limitsEnv variable",
        ),
        ("{ cpu: X }", "unknown field"),
    ] {
        let yaml = format!(
            "defaultClass: a\nclasses:\n  a: {{ max: {{ cpu: null, memory: null }} }}\nlimitsEnv: {names}\n"
        );
        let err = Policy::parse(&yaml, "p.yaml").expect_err(names).to_string();
        assert!(err.contains(expected), "{names}: {err}");
        assert!(err.starts_with("p.yaml:4:"), "{names}: {err}");
    }
}
