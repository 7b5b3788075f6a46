//! Classes for GitLab Runner 16.x job pods: runner short tokens and match blocks.

use super::*;

/// Two classes matched by runner token; `small` is the default.
const TOKENS: &str = "defaultClass: small\nclasses:\n  big:\n    max: { cpu: null, memory: null }\n    match: { runnerTokens: [xz3kq9ab, T3YZ8bQk] }\n  small: { max: { cpu: null, memory: null } }\n";

/// A 16.x job pod of runner `token`: no runner-name label, `pod` label, name prefix.
fn pod_of(token: &str) -> Value {
    let mut pod = job_pod();
    pod["metadata"]["name"] = json!(format!("runner-{token}-project-42-concurrent-0-abcd1234"));
    pod["metadata"]["labels"] = json!({"pod": format!("runner-{token}-project-42-concurrent-0")});
    pod
}

fn reason(out: &Out) -> String {
    match out {
        Out::Allow { reason, .. } => reason.to_string(),
        other => panic!("expected an allowed pod, got {other:?}"),
    }
}

#[test]
fn the_runner_token_in_the_pod_name_chooses_the_class() {
    let policy = policy_from(TOKENS);
    let out = run_with(&policy, &Req::default(), &pod_of("xz3kq9ab"));
    assert_eq!(out.class(), "big");
    assert_eq!(
        reason(&out),
        "match rules: runner token xz3kq9ab (pod name \"runner-xz3kq9ab-project-42-concurrent-0-abcd1234\", label pod agrees)"
    );
    // The policy may spell the token as GitLab shows it; pod names are lower-case.
    assert_eq!(
        run_with(&policy, &Req::default(), &pod_of("t3yz8bqk")).class(),
        "big"
    );
    assert_eq!(
        run_with(&policy, &Req::default(), &pod_of("zzzzzzzz")).class(),
        "small"
    );
}

#[test]
fn a_pod_named_only_by_generate_name_is_matched_by_it() {
    // GitLab Runner up to 16.1: the API server names the pod after admission.
    let policy = policy_from(TOKENS);
    let mut pod = pod_of("xz3kq9ab");
    pod["metadata"]["generateName"] = json!("runner-xz3kq9ab-project-42-concurrent-0-");
    pod["metadata"]["name"] = json!("");
    assert_eq!(run_with(&policy, &Req::default(), &pod).class(), "big");
    pod["metadata"].as_object_mut().map(|m| m.remove("name"));
    let out = run_with(&policy, &Req::default(), &pod);
    assert_eq!(out.class(), "big");
    assert!(reason(&out).contains("pod name \"runner-xz3kq9ab-project-42-concurrent-0-\""));
}

#[test]
fn a_pod_label_that_disagrees_with_the_name_stops_the_rule_with_a_warning() {
    let policy = policy_from(TOKENS);
    let mut pod = pod_of("zzzzzzzz");
    // A job on runner zzzzzzzz that overwrote its `pod` label to claim runner xz3kq9ab:
    // the name is the runner's, so nothing is gained.
    pod["metadata"]["labels"]["pod"] = json!("runner-xz3kq9ab-project-42-concurrent-0");
    assert_eq!(run_with(&policy, &Req::default(), &pod).class(), "small");
    // The other way round: the name says xz3kq9ab, the label another runner.
    let mut pod = pod_of("xz3kq9ab");
    pod["metadata"]["labels"]["pod"] = json!("runner-zzzzzzzz-project-42-concurrent-0");
    let out = run_with(&policy, &Req::default(), &pod);
    assert_eq!(out.class(), "small");
    assert!(
        out.warnings().iter().any(|w| w.contains("is runner xz3kq9ab's but its label pod=\"runner-zzzzzzzz-project-42-concurrent-0\" is not")),
        "{:?}",
        out.warnings()
    );
    // Without the label, the name alone decides.
    pod["metadata"]["labels"] = json!({});
    assert_eq!(run_with(&policy, &Req::default(), &pod).class(), "big");
}

#[test]
fn a_token_matches_whole_never_as_the_start_of_a_longer_one() {
    let policy = policy_from(TOKENS);
    for name in [
        "runner-xz3kq9abc-project-42-concurrent-0-x",
        "runner-xz3kq9a-project-42-concurrent-0-x",
        "xrunner-xz3kq9ab-project-42",
        "runner-xz3kq9ab",
        "build-xz3kq9ab-project-42",
    ] {
        let mut pod = job_pod();
        pod["metadata"]["name"] = json!(name);
        pod["metadata"]["labels"] = json!({});
        assert_eq!(
            run_with(&policy, &Req::default(), &pod).class(),
            "small",
            "{name}"
        );
    }
}

#[test]
fn any_block_may_match_and_a_block_needs_all_its_rules() {
    let policy = policy_from(
        "defaultClass: small\nclasses:\n  big:\n    max: { cpu: null, memory: null }\n    match:\n      - { runnerTokens: [xz3kq9ab], namespaces: [gitlab] }\n      - { serviceAccounts: [gitlab/ci-big-gitlab-runner] }\n  small: { max: { cpu: null, memory: null } }\n",
    );
    let big_sa = "system:serviceaccount:gitlab:ci-big-gitlab-runner";
    // (token of the pod, namespace, user, class, reason)
    let cases = [
        (
            "xz3kq9ab",
            "gitlab",
            "u",
            "big",
            Some("match[0] (block 1 of 2): runner token xz3kq9ab"),
        ),
        ("xz3kq9ab", "other", "u", "small", None),
        (
            "zzzzzzzz",
            "other",
            big_sa,
            "big",
            Some("match[1] (block 2 of 2): user system:serviceaccount:gitlab:ci-big-gitlab-runner"),
        ),
        (
            "zzzzzzzz",
            "gitlab",
            "system:serviceaccount:gitlab:other",
            "small",
            None,
        ),
    ];
    for (token, namespace, user, class, why) in cases {
        let req = Req {
            namespace,
            user,
            ..Req::default()
        };
        let out = run_with(&policy, &req, &pod_of(token));
        assert_eq!(out.class(), class, "{token} {namespace} {user}");
        if let Some(why) = why {
            assert!(reason(&out).starts_with(why), "{}", reason(&out));
        }
    }
    // Both blocks hold: the first one is named.
    let req = Req {
        user: big_sa,
        ..Req::default()
    };
    assert!(reason(&run_with(&policy, &req, &pod_of("xz3kq9ab"))).starts_with("match[0]"));
}

#[test]
fn the_runner_token_in_annotations_or_env_chooses_nothing() {
    let policy = policy_from(TOKENS);
    let mut pod = annotate(
        pod_of("zzzzzzzz"),
        &[
            ("ci.skao.int/runner-token", "xz3kq9ab"),
            ("pod", "runner-xz3kq9ab-project-42"),
        ],
    );
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "CI_RUNNER_SHORT_TOKEN", "value": "xz3kq9ab"}]);
    let out = run_once(&policy, &Req::default(), &pod);
    assert!(matches!(out, Out::Deny { .. } | Out::Allow { .. }));
    assert_eq!(out.class(), "small");
}

// ---- class choice ----

#[test]
fn each_runner_name_selects_its_own_class() {
    for class in &DEFAULT.classes {
        let out = run(&with_runner(job_pod(), &class.name));
        assert_eq!(out.class(), class.name);
        match out {
            Out::Allow {
                reason: ClassReason::Matched { facts, .. },
                ..
            } => {
                assert_eq!(
                    facts,
                    [format!(
                        "runner manager.runner.gitlab.com/name={}",
                        class.name
                    )]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_unknown_runner_gets_the_default_class() {
    let out = run(&with_runner(job_pod(), "someone-elses-runner"));
    assert_eq!(out.class(), "k8srunner");
    assert!(matches!(
        out,
        Out::Allow {
            reason: ClassReason::Default,
            ..
        }
    ));
}

#[test]
fn the_namespace_class_label_wins_over_the_runner_label() {
    let mut labels = opted_in().unwrap_or_default();
    labels.insert("ci.skao.int/runner-class".into(), "ska-k8srunner-dp".into());
    let req = Req {
        labels: Some(labels),
        ..Req::default()
    };
    let out = run_with(&DEFAULT, &req, &with_runner(job_pod(), "k8srunner-xlarge"));
    assert_eq!(out.class(), "ska-k8srunner-dp");
    assert!(matches!(
        out,
        Out::Allow {
            reason: ClassReason::NamespaceLabel { .. },
            ..
        }
    ));
}

#[test]
fn a_namespace_label_naming_no_class_falls_back_with_a_warning() {
    let mut labels = opted_in().unwrap_or_default();
    labels.insert("ci.skao.int/runner-class".into(), "no-such-class".into());
    let req = Req {
        labels: Some(labels),
        ..Req::default()
    };
    let out = run_with(&DEFAULT, &req, &with_runner(job_pod(), "k8srunner-large"));
    assert_eq!(out.class(), "k8srunner-large");
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("no-such-class") && w.contains("names no class"))
    );
}

#[test]
fn job_controlled_input_never_chooses_the_class() {
    // Annotations, env and look-alike labels are not trusted facts.
    let mut pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/class", "k8srunner-xlarge"),
            ("ci.skao.int/runner-class", "k8srunner-xlarge"),
        ],
    );
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "CI_RUNNER_TAGS", "value": "k8srunner-xlarge"}]);
    pod["metadata"]["labels"]["manager.runner.gitlab.com/Name"] = json!("k8srunner-xlarge");
    pod["metadata"]["labels"]["ci.skao.int/runner-class"] = json!("k8srunner-xlarge");
    let out = run(&pod);
    // ci.skao.int/runner-class as a pod annotation is an unknown override: denied.
    assert!(out.denial().contains("ci.skao.int/runner-class"));
    let pod = annotate(job_pod(), &[("ci.skao.int/class", "k8srunner-xlarge")]);
    let out = run(&pod);
    assert_eq!(out.class(), "k8srunner");
    assert_eq!(
        out.pod()["metadata"]["annotations"]["ci.skao.int/class"],
        "k8srunner",
        "pre-set audit key overwritten"
    );
}

#[test]
fn match_rules_need_every_fact_and_the_first_class_wins() {
    let policy = policy_from(
        "defaultClass: fallback\nclasses:\n  both:\n    match: { runnerNames: [r1], serviceAccounts: [gitlab/runner-one] }\n    max: { cpu: null, memory: null }\n  by-user:\n    match: { serviceAccounts: [gitlab/runner-two] }\n    max: { cpu: null, memory: null }\n  by-namespace:\n    match: { namespaces: [science] }\n    max: { cpu: null, memory: null }\n  by-label:\n    match: { podLabels: { team: astro } }\n    max: { cpu: null, memory: null }\n  fallback: { max: { cpu: null, memory: null } }\n",
    );
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
        &'static str,
    );
    let cases: [Case; 6] = [
        (
            "r1",
            "system:serviceaccount:gitlab:runner-one",
            "gitlab",
            None,
            "both",
        ),
        (
            "r1",
            "system:serviceaccount:gitlab:other",
            "gitlab",
            None,
            "fallback",
        ),
        (
            "r1",
            "system:serviceaccount:gitlab:runner-two",
            "gitlab",
            None,
            "by-user",
        ),
        (
            "x",
            "system:serviceaccount:gitlab:other",
            "science",
            None,
            "by-namespace",
        ),
        ("x", "u", "gitlab", Some(("team", "astro")), "by-label"),
        ("x", "u", "gitlab", Some(("team", "bio")), "fallback"),
    ];
    for (runner, user, namespace, label, want) in cases {
        let mut pod = with_runner(job_pod(), runner);
        if let Some((k, v)) = label {
            pod["metadata"]["labels"][k] = json!(v);
        }
        let req = Req {
            user,
            namespace,
            ..Req::default()
        };
        assert_eq!(
            run_with(&policy, &req, &pod).class(),
            want,
            "{runner} {user} {namespace} {label:?}"
        );
    }
}

// ---- issue 25, point 4: the runner-name label is trusted only with its id-short ----

/// A job pod of the runner whose short token the pod name spells `name_token`, carrying
/// `labels` (the runner's or a job's).
fn named_pod(name_token: &str, labels: Value) -> Value {
    let mut pod = job_pod();
    pod["metadata"]["name"] = json!(format!(
        "runner-{name_token}-project-42-concurrent-0-abcd1234"
    ));
    pod["metadata"]["labels"] = labels;
    pod
}

#[test]
fn a_runner_name_label_without_an_agreeing_id_short_chooses_no_class() {
    let a100 = "ska-k8srunner-dp-gpu-a100";
    for labels in [
        // GitLab Runner 16.x sets neither: the name label is a job's overwrite.
        json!({"manager.runner.gitlab.com/name": a100}),
        // An id-short that is not the token in the pod's name (the job's guess).
        json!({"manager.runner.gitlab.com/name": a100, "manager.runner.gitlab.com/id-short": "t3YZ8bQk"}),
        json!({"manager.runner.gitlab.com/name": a100, "manager.runner.gitlab.com/id-short": ""}),
    ] {
        let out = run(&named_pod("xz3kq9ab", labels.clone()));
        assert_eq!(out.class(), "k8srunner", "{labels}");
        let w = out.warnings().join("\n");
        assert!(
            w.contains(&format!("label manager.runner.gitlab.com/name=\"{a100}\" not trusted: no manager.runner.gitlab.com/id-short label agrees with the runner token in the pod name")),
            "{labels}: {w}"
        );
    }
}

#[test]
fn a_runner_name_label_with_an_agreeing_id_short_chooses_its_class() {
    // id-short keeps the token's case and `_`; the pod name lower-cases it and deletes
    // every `_` (dns.MakeRFC1123Compatible). 17.9-18.1: 8 or 9 characters (17 for GR
    // tokens); 18.2 and later: 9, partition prefix stripped.
    for (id_short, name_token) in [
        ("t3YZ8bQk", "t3yz8bqk"),
        ("Ze_n8E6e", "zen8e6e"),
        ("aaa_cccbb", "aaacccbb"),
        ("t9Wkyj-HG", "t9wkyj-hg"),
        ("GR1348941Z196cJVy", "gr1348941z196cjvy"),
        // sanitizeLabel trims a trailing `-` from the label, the pod name keeps it.
        ("xYzWabc", "xyzwabc-"),
    ] {
        let pod = named_pod(
            name_token,
            json!({"manager.runner.gitlab.com/name": "k8srunner-gpu-v100", "manager.runner.gitlab.com/id-short": id_short}),
        );
        let out = run(&pod);
        assert_eq!(out.class(), "k8srunner-gpu-v100", "{id_short}");
        assert!(out.warnings().iter().all(|w| !w.contains("not trusted")));
    }
    // Agreeing means the whole token: a longer one in the name is another runner's.
    let pod = named_pod(
        "t3yz8bqkx",
        json!({"manager.runner.gitlab.com/name": "k8srunner-gpu-v100", "manager.runner.gitlab.com/id-short": "t3YZ8bQk"}),
    );
    assert_eq!(run(&pod).class(), "k8srunner");
}

#[test]
fn runner_tokens_are_compared_as_pod_names_spell_them() {
    // The pod name deletes `_` (it does not write `-`), so the token as the runner logs
    // it (`runner=Ze_n8E6e`) and as the pod name shows it (`zen8e6e`) both match, and
    // a spelling with `-` for `_` does not.
    let policy = policy_from(
        "defaultClass: small\nclasses:\n  big:\n    max: { cpu: null, memory: null }\n    match: { runnerTokens: [Ze_n8E6e, zen8e6f, t9Wkyj-HG] }\n  small: { max: { cpu: null, memory: null } }\n",
    );
    for (token, class) in [
        ("zen8e6e", "big"),
        ("zen8e6f", "big"),
        ("t9wkyj-hg", "big"),
        ("ze-n8e6e", "small"),
    ] {
        assert_eq!(
            run_with(&policy, &Req::default(), &pod_of(token)).class(),
            class,
            "{token}"
        );
    }
}
