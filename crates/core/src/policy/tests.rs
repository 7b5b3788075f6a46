use super::*;

mod matching;

fn parse(yaml: &str) -> Result<Policy, PolicyError> {
    Policy::parse(yaml, "policy.yaml")
}

fn problems(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => panic!("expected the policy to be rejected:\n{yaml}"),
        Err(PolicyError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// For each (policy, words of a problem, line): the policy is rejected with a problem
/// that says those words and points at that line.
fn assert_problems_located(cases: &[(&str, &str, u64)]) {
    for &(yaml, needle, line) in cases {
        let found = problems(yaml);
        let hit = found
            .iter()
            .find(|p| p.contains(needle))
            .unwrap_or_else(|| panic!("no problem mentions {needle:?}; got {found:?}"));
        assert!(
            hit.starts_with(&format!("policy.yaml:{line}:")),
            "{hit:?} should point at line {line}"
        );
    }
}

const MINIMAL: &str = "defaultClass: a\nclasses:\n  a: { max: { cpu: null, memory: null } }\n";

#[test]
fn embedded_default_policy_is_valid_and_has_the_six_classes() {
    let p = Policy::embedded();
    let names: Vec<&str> = p.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "k8srunner",
            "k8srunner-large",
            "k8srunner-xlarge",
            "k8srunner-gpu-v100",
            "ska-k8srunner-dp",
            "ska-k8srunner-dp-gpu-a100"
        ]
    );
    assert_eq!(p.classes[p.default_class].name, "k8srunner");
    assert_eq!(p.prefix, "ci.skao.int");
    assert_eq!(p.hash.len(), 12);
}

fn q(s: &str) -> Quantity {
    Quantity::parse(s).expect("test quantity")
}

#[test]
fn embedded_default_policy_reproduces_the_design_table() {
    // The SKAO classes: class → (CPU limit, memory limit, GPUs default, GPUs max).
    type Row = (
        &'static str,
        Option<&'static str>,
        &'static str,
        Option<(u32, u32)>,
    );
    let table: [Row; 6] = [
        ("k8srunner", Some("5"), "10Gi", None),
        ("k8srunner-large", None, "32Gi", None),
        ("k8srunner-xlarge", None, "128Gi", None),
        ("k8srunner-gpu-v100", Some("5"), "10Gi", Some((1, 1))),
        ("ska-k8srunner-dp", Some("3"), "1Gi", None),
        ("ska-k8srunner-dp-gpu-a100", Some("5"), "10Gi", Some((1, 4))),
    ];
    let p = Policy::embedded();
    for (name, cpu, memory, gpus) in table {
        let (_, c) = p.class(name).expect(name);
        let expected_cpu = match cpu {
            Some(v) => Limit::Set(q(v)),
            None => Limit::Unlimited,
        };
        assert_eq!(
            c.build.limits[&ResourceName::Cpu],
            expected_cpu,
            "{name} cpu"
        );
        assert_eq!(
            c.build.limits[&ResourceName::Memory],
            Limit::Set(q(memory)),
            "{name} memory"
        );
        assert_eq!(
            c.match_blocks[0].runner_names,
            [name],
            "{name} matches its own runner"
        );
        assert_eq!(
            c.node_selector
                .get("node-role.skatelescope.org/ci-worker")
                .map(String::as_str),
            Some("true"),
            "{name} runs on CI nodes"
        );
        match gpus {
            None => assert!(c.gpu.is_none(), "{name} has no GPU"),
            Some((count, max)) => {
                let g = c.gpu.as_ref().expect(name);
                assert_eq!((g.count, g.max), (count, max), "{name} GPUs");
                assert_eq!(g.resource, "nvidia.com/gpu");
                assert_eq!(g.runtime_class_name.as_deref(), Some("nvidia"));
                assert_eq!(
                    c.node_selector.get("nvidia.com/gpu").map(String::as_str),
                    Some("true")
                );
                assert!(c.tolerations.iter().any(|t| t.key == "nvidia.com/gpu"
                    && t.operator == TolerationOperator::Exists
                    && t.effect.is_empty()));
            }
        }
        for role in [&c.build, &c.helper, &c.services] {
            for (r, req) in &role.requests {
                assert!(
                    c.max.get(r).is_none_or(|m| req <= m),
                    "{name} {r} request within max"
                );
            }
        }
    }
}

#[test]
fn a_minimal_policy_gets_documented_defaults() {
    let p = parse(MINIMAL).expect("valid");
    assert_eq!(p.prefix, "ci.skao.int");
    assert_eq!(p.keys.cpu_limit, "ci.skao.int/cpu-limit");
    assert_eq!(p.keys.opt_in, "ci.skao.int/pod-policy");
    assert_eq!(p.job_pods.containers, ["build", "helper"]);
    assert_eq!(
        p.job_pods.or_label.as_deref(),
        Some("manager.runner.gitlab.com/name")
    );
    assert_eq!(p.on_exceed, OnExceed::Clamp);
    assert_eq!(
        p.docker.mode,
        DockerMode::Socket {
            socket_path: "/var/run/ci-dind/docker.sock".into(),
            mount: SocketMount::Directory,
            host_path: "/var/run/ci-dind".into(),
            volume_name: "ci-dind".into()
        }
    );
}

#[test]
fn null_limit_means_unlimited_and_absent_means_untouched() {
    let p = parse(
        "defaultClass: a\nclasses:\n  a:\n    build: { limits: { cpu: null, memory: 1Gi } }\n    max: { cpu: null, memory: 2Gi }\n",
    )
    .expect("valid");
    let limits = &p.classes[0].build.limits;
    assert_eq!(limits.get(&ResourceName::Cpu), Some(&Limit::Unlimited));
    assert_eq!(
        limits.get(&ResourceName::Memory),
        Some(&Limit::Set(q("1Gi")))
    );
    assert_eq!(limits.get(&ResourceName::EphemeralStorage), None);
}

#[test]
fn classes_keep_file_order() {
    let p = parse("defaultClass: a\nclasses:\n  z: { max: { cpu: null, memory: null } }\n  a: { max: { cpu: null, memory: null } }\n  m: { max: { cpu: null, memory: null } }\n").expect("valid");
    let names: Vec<&str> = p.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["z", "a", "m"]);
}

#[test]
fn service_accounts_are_normalised_to_usernames() {
    let p = parse(
        "defaultClass: a\nclasses:\n  a:\n    match: { serviceAccounts: [gitlab/runner, \"system:serviceaccount:ci:r2\"] }\n    max: { cpu: null, memory: null }\n",
    )
    .expect("valid");
    assert_eq!(
        p.classes[0].match_blocks[0].service_accounts,
        [
            "system:serviceaccount:gitlab:runner",
            "system:serviceaccount:ci:r2"
        ]
    );
}

#[test]
fn invalid_policies_are_rejected_with_file_line_and_key() {
    // (policy text, text the message must contain, expected line)
    let cases: &[(&str, &str, u64)] = &[
        (
            "defaultClass: a\nclasses:\n  a: { bogus: 1 }\n",
            "unknown field `bogus`",
            3,
        ),
        (
            "defaultClass: a\nbogus: 1\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "unknown field `bogus`",
            2,
        ),
        (
            "defaultClass: a\nclasses:\n  a: {}\n  a: {}\n",
            "duplicate key `a`: a key may appear once in a mapping; remove or merge the repeated one",
            4,
        ),
        (
            "defaultClass: a\ndefaultClass: a\nclasses:\n  a: {}\n",
            "duplicate key `defaultClass`",
            2,
        ),
        // A tab that starts a line was reported at the end of the line before.
        (
            "defaultClass: a\n\tclasses:\n  a: {}\n",
            "a tab character: YAML indents with spaces only",
            2,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n\tbuild: {}\n",
            "a tab character",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    build:\n      requests:\n\t\tcpu: \"1\"\n",
            "a tab character",
            6,
        ),
        (
            "defaultClass: b\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "defaultClass: \"b\" is not one of the classes (a)",
            1,
        ),
        (
            "classes:\n  a: { max: { cpu: null, memory: null } }\n",
            "defaultClass",
            1,
        ),
        (
            "defaultClass: a\nclasses: {}\n",
            "at least one runner class",
            2,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    build: { requests: { cpu: lots } }\n",
            "\"lots\" is not a Kubernetes quantity",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    build: { requests: { cpu: \"2\" }, limits: { cpu: \"1\" } }\n",
            "classes.a.build.requests.cpu: 2 is above the limit 1",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    build:\n      limits: { memory: 2Gi }\n    max: { memory: 1Gi }\n",
            "classes.a.build.limits.memory: 2Gi is above the class ceiling max.memory 1Gi",
            5,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    build: { requests: { cpu: \"-1\" } }\n",
            "classes.a.build.requests.cpu: -1 must be zero or more",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    build: { requests: { gpu: \"1\" } }\n",
            "unknown field `gpu`",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    tolerations: [ { key: k, operator: Maybe } ]\n",
            "classes.a.tolerations[0]: operator \"Maybe\" is not valid; use Exists or Equal",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    tolerations: [ { key: k, operator: Exists, effect: NoWay } ]\n",
            "effect \"NoWay\" is not valid",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    tolerations: [ { key: k, operator: Exists, value: v } ]\n",
            "operator Exists takes no value",
            4,
        ),
        (
            "defaultClass: a\nciNodes:\n  tolerations:\n    - { key: k, effect: NoSchedule, tolerationSeconds: 5 }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "ciNodes.tolerations[0]: tolerationSeconds needs effect NoExecute",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    gpu: { count: 2, max: 1 }\n",
            "classes.a.gpu.max: must be a whole number at least count (2)",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    gpu: { count: 0 }\n",
            "classes.a.gpu.count",
            4,
        ),
        (
            "defaultClass: a\nprefix: Not_A_Domain\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "prefix: \"Not_A_Domain\" is not a DNS subdomain",
            2,
        ),
        (
            "defaultClass: a\ndocker: { mode: socket, socketPath: relative/docker.sock }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "docker.socketPath",
            2,
        ),
        (
            "defaultClass: a\ndocker: { mode: carrier-pigeon }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "carrier-pigeon",
            2,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    match: { serviceAccounts: [justaname] }\n",
            "write namespace/name",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    nodeSelector: { \"bad key!\": x }\n",
            "is not a valid label key",
            4,
        ),
        (
            "defaultClass: \"bad name\"\nclasses:\n  \"bad name\": { max: { cpu: null, memory: null } }\n",
            "is not a valid class name",
            3,
        ),
    ];
    assert_problems_located(cases);
}

#[test]
fn a_duplicate_key_is_explained_without_the_library_hint() {
    let found = problems("defaultClass: a\nclasses:\n  a: {}\n  a: {}\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!found[0].contains("DuplicateKeyPolicy"), "{found:?}");
}

#[test]
fn a_tab_is_located_on_its_own_line_and_column() {
    // The library puts this one at the end of line 1 (1:15), the line before the tab.
    let found = problems("defaultClass: a\n\tclasses:\n  a: {}\n");
    assert!(
        found[0].starts_with("policy.yaml:2:1: a tab character"),
        "{found:?}"
    );
    // A line of only a tab is blank to YAML; the tab at fault is the next one.
    let found = problems("defaultClass: a\nclasses:\n  a:\n    build: {}\n\t\n  \tb: {}\n");
    assert!(
        found[0].starts_with("policy.yaml:6:3: a tab character"),
        "{found:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let found = problems(
        "defaultClass: nope\nclasses:\n  a:\n    build: { requests: { cpu: \"-1\" } }\n    gpu: { count: 0 }\n    max: { cpu: null, memory: null }\n",
    );
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn the_policy_hash_follows_the_content() {
    let a = parse(MINIMAL).expect("valid");
    let b = parse(&format!("{MINIMAL}# a comment\n")).expect("valid");
    assert_ne!(a.hash, b.hash);
    assert_eq!(a.hash, parse(MINIMAL).expect("valid").hash);
}

#[test]
fn every_class_states_its_cpu_and_memory_ceilings() {
    let cases = [
        (
            "defaultClass: a\nclasses:\n  a:\n    build: { limits: { cpu: \"1\" } }\n",
            "classes.a.max: missing; every class states its ceiling for cpu and memory",
            3,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    max: { cpu: \"8\" }\n",
            "classes.a.max.memory: missing; state the class ceiling for memory",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    build: { limits: { cpu: null } }\n    max: { cpu: \"30\", memory: null }\n",
            "classes.a.build.limits.cpu: null (no limit) contradicts the class ceiling max.cpu 30",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    max: { cpu: \"0\", memory: null }\n",
            "classes.a.max.cpu: 0 must be greater than zero",
            4,
        ),
    ];
    assert_problems_located(&cases);
}

#[test]
fn a_null_ceiling_is_knowingly_unlimited() {
    let p = parse(
        "defaultClass: a\nclasses:\n  a:\n    build: { limits: { cpu: null } }\n    max: { cpu: null, memory: 4Gi }\n",
    )
    .expect("valid");
    assert_eq!(p.classes[0].max.get(&ResourceName::Cpu), None);
    assert_eq!(p.classes[0].max.get(&ResourceName::Memory), Some(&q("4Gi")));
}
