use super::super::Policy;

fn warnings(yaml: &str) -> Vec<String> {
    Policy::parse(yaml, "policy.yaml")
        .expect("valid policy")
        .warnings()
}

const CEILING: &str = "max: { cpu: null, memory: null }";

#[test]
fn the_embedded_policy_has_no_warnings() {
    assert_eq!(Policy::embedded().warnings(), Vec::<String>::new());
}

#[test]
fn a_pod_label_match_on_a_key_a_job_can_set_is_a_warning() {
    let w = warnings(&format!(
        "defaultClass: a\nclasses:\n  a: {{ {CEILING} }}\n  b:\n    {CEILING}\n    match: {{ podLabels: {{ team: astro, manager.runner.gitlab.com/name: x, runner.gitlab.com/x: y }} }}\n"
    ));
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w.iter()
            .any(|w| w.starts_with("classes.b.match.podLabels.team: a job can set this label")),
        "{w:?}"
    );
    // Issue 25, point 4: runner-owned keys are the runner's from 17.9 only.
    assert!(
        w.iter().any(|w| w.starts_with(
            "classes.b.match.podLabels.manager.runner.gitlab.com/name: GitLab Runner keeps labels under runner.gitlab.com from jobs only from 17.9"
        )),
        "{w:?}"
    );
}

#[test]
fn look_alike_runner_domains_are_not_the_runners() {
    for key in [
        "evilrunner.gitlab.com/x",
        "runner.gitlab.com.evil/x",
        "runner.gitlab.com",
    ] {
        assert!(!super::runner_owned(key), "{key}");
    }
    assert!(super::runner_owned("project.runner.gitlab.com/id"));
}

#[test]
fn a_wildcard_toleration_anywhere_is_a_warning() {
    let ci = warnings(&format!(
        "defaultClass: a\nciNodes: {{ tolerations: [ {{ operator: Exists }} ] }}\nclasses:\n  a: {{ {CEILING} }}\n"
    ));
    assert!(
        ci.iter().any(|w| w.contains("tolerates every taint")),
        "{ci:?}"
    );
    let keyed = warnings(&format!(
        "defaultClass: a\nclasses:\n  a: {{ {CEILING}, tolerations: [ {{ key: k, operator: Exists }} ] }}\n"
    ));
    assert_eq!(keyed, Vec::<String>::new());
}

#[test]
fn a_gpu_default_class_is_a_warning() {
    let w = warnings(&format!(
        "defaultClass: g\nclasses:\n  g: {{ {CEILING}, gpu: {{ count: 1 }} }}\n"
    ));
    assert!(
        w.iter()
            .any(|w| w.starts_with("defaultClass: g is a GPU class")),
        "{w:?}"
    );
}

#[test]
fn a_placeholder_runner_token_is_a_warning() {
    let w = warnings(&format!(
        "defaultClass: a\nclasses:\n  a: {{ {CEILING} }}\n  b:\n    {CEILING}\n    match: [ {{ runnerTokens: [todo0101, t3yz8bqk] }}, {{ runnerTokens: [todo00001] }} ]\n"
    ));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("classes.b.match.runnerTokens: todo0101 is a placeholder"),
        "{w:?}"
    );
    assert!(w[1].contains(": todo00001 is a placeholder"), "{w:?}");
}
