//! Requests, limits and class ceilings.

use crate::policy::tests::{assert_problems_located, parse, q};
use crate::policy::{Limit, ResourceName};

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
fn wrong_requests_and_limits_are_rejected_with_file_line_and_key() {
    let cases: &[(&str, &str, u64)] = &[
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
    ];
    assert_problems_located(cases);
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
