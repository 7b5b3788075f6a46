//! Reading the file as a whole: YAML mistakes located where they are, the top-level
//! keys, defaults, file order, the hash, and every problem reported at once.

use crate::policy::tests::{MINIMAL, assert_problems_located, parse, problems};
use crate::policy::{DockerMode, OnExceed, SocketMount};

#[test]
fn invalid_policies_are_rejected_with_file_line_and_key() {
    // The YAML reader's mistakes and the top-level keys; each section tests its own.
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
            "defaultClass: a\nprefix: Not_A_Domain\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "prefix: \"Not_A_Domain\" is not a DNS subdomain",
            2,
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
            volume_name: "ci-dind".into(),
            group: None,
        }
    );
}

#[test]
fn classes_keep_file_order() {
    let p = parse("defaultClass: a\nclasses:\n  z: { max: { cpu: null, memory: null } }\n  a: { max: { cpu: null, memory: null } }\n  m: { max: { cpu: null, memory: null } }\n").expect("valid");
    let names: Vec<&str> = p.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["z", "a", "m"]);
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
