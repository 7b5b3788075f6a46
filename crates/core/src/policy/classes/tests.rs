//! Runner classes: their names, and `match` as one block or a list of blocks, with the
//! runnerTokens and serviceAccounts rules.

use crate::policy::tests::{assert_problems_located, parse};
use crate::policy::{Policy, PolicyError};

/// A policy with class `a` matched by `match` and an unmatched default `z`.
fn with_match(rules: &str) -> Result<Policy, PolicyError> {
    parse(&format!(
        "defaultClass: z\nclasses:\n  a:\n    max: {{ cpu: null, memory: null }}\n    match: {rules}\n  z: {{ max: {{ cpu: null, memory: null }} }}\n"
    ))
}

fn problems_of(rules: &str) -> Vec<String> {
    match with_match(rules) {
        Ok(_) => panic!("expected {rules} to be rejected"),
        Err(PolicyError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn the_single_block_form_and_the_list_form_both_read() {
    let one = with_match("{ runnerNames: [r1], namespaces: [ci] }").expect("valid");
    assert_eq!(one.classes[0].match_blocks.len(), 1);
    assert_eq!(one.classes[0].match_blocks[0].runner_names, ["r1"]);
    assert_eq!(one.classes[0].match_blocks[0].namespaces, ["ci"]);

    let many = with_match(
        "\n      - { runnerTokens: [xz3kq9ab] }\n      - { serviceAccounts: [gitlab/ci-k8srunner-gitlab-runner] }",
    )
    .expect("valid");
    let blocks = &many.classes[0].match_blocks;
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].runner_tokens, ["xz3kq9ab"]);
    assert_eq!(
        blocks[1].service_accounts,
        ["system:serviceaccount:gitlab:ci-k8srunner-gitlab-runner"]
    );
    // No match at all: no blocks, never matched.
    assert!(many.classes[1].match_blocks.is_empty());
    assert!(
        with_match("{}").expect("valid").classes[0]
            .match_blocks
            .is_empty()
    );
}

#[test]
fn empty_blocks_in_a_list_are_refused() {
    let p = problems_of("[]");
    assert!(
        p[0].contains("classes.a.match: an empty list matches nothing"),
        "{p:?}"
    );
    let p = problems_of("\n      - { runnerNames: [r1] }\n      - {}");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("policy.yaml:7:"), "{p:?}");
    assert!(
        p[0].contains("classes.a.match[1]: an empty block matches nothing"),
        "{p:?}"
    );
}

#[test]
fn problems_inside_a_block_name_the_block_and_line() {
    let p = problems_of("\n      - { runnerNames: [r1] }\n      - { serviceAccounts: [nope] }");
    assert!(p[0].starts_with("policy.yaml:7:"), "{p:?}");
    assert!(
        p[0].contains("classes.a.match[1].serviceAccounts: \"nope\""),
        "{p:?}"
    );
    let p = problems_of("\n      - { runnerNames: [r1], tokens: [x] }");
    assert!(p[0].contains("tokens"), "{p:?}");
}

#[test]
fn runner_tokens_are_kept_as_job_pod_names_spell_them() {
    // Pod names lower-case the token and delete every `_` (GitLab Runner's
    // dns.MakeRFC1123Compatible): `Ze_n8E6e` is `zen8e6e` there, one character shorter.
    let p = with_match(
        "{ runnerTokens: [xz3kq9ab, T3YZ8bQk, Ab_cd-12x, GR1348941aBcDeF_1, zen8e6e, t9Wkyj-HG] }",
    )
    .expect("valid");
    assert_eq!(
        p.classes[0].match_blocks[0].runner_tokens,
        [
            "xz3kq9ab",
            "t3yz8bqk",
            "abcd-12x",
            "gr1348941abcdef1",
            "zen8e6e",
            "t9wkyj-hg"
        ]
    );
}

#[test]
fn wrong_runner_tokens_are_refused_and_full_tokens_are_not_repeated() {
    for (token, says) in [
        ("abc.1234", "is not a runner short token"),
        ("\"\"", "has no letter or digit"),
        ("___", "has no letter or digit"),
    ] {
        let p = problems_of(&format!("{{ runnerTokens: [{token}] }}"));
        assert!(p[0].contains("classes.a.match.runnerTokens"), "{p:?}");
        assert!(p[0].contains(says), "{token}: {p:?}");
    }
    for secret in ["glrt-2CR8_eVxiioB1QmzPZwa", "Zx9Qp2Lm8Rt4Vb6Nc1Kd3Hf7"] {
        let p = problems_of(&format!("{{ runnerTokens: [{secret}] }}"));
        assert!(p[0].contains("never the runner's full token"), "{p:?}");
        assert!(!p[0].contains(secret), "the secret is not repeated: {p:?}");
    }
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
fn wrong_class_names_and_service_accounts_are_rejected_with_file_line_and_key() {
    let cases: &[(&str, &str, u64)] = &[
        (
            "defaultClass: a\nclasses:\n  a:\n    match: { serviceAccounts: [justaname] }\n",
            "write namespace/name",
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
