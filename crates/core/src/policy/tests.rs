//! The embedded default policy, and the helpers the sections' tests share: a policy
//! read from text, and the problems it is refused with.

use super::*;

pub(super) fn parse(yaml: &str) -> Result<Policy, PolicyError> {
    Policy::parse(yaml, "policy.yaml")
}

pub(super) fn problems(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => panic!("expected the policy to be rejected:\n{yaml}"),
        Err(PolicyError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// For each (policy, words of a problem, line): the policy is rejected with a problem
/// that says those words and points at that line.
pub(super) fn assert_problems_located(cases: &[(&str, &str, u64)]) {
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

pub(super) const MINIMAL: &str =
    "defaultClass: a\nclasses:\n  a: { max: { cpu: null, memory: null } }\n";

pub(super) fn q(s: &str) -> Quantity {
    Quantity::parse(s).expect("test quantity")
}

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
