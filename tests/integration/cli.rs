//! The offline commands, run as a user would: the real binary, files and stdin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = bin()
        .args(args)
        .env_remove("CI_POD_WEBHOOK_POLICY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(input) = stdin {
        // A command that fails on its arguments exits without reading: a broken pipe
        // here is expected then, and the exit status tells the rest.
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes());
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn decoded_patch(response: &Value) -> Vec<Value> {
    let b64 = response["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

#[test]
fn mutate_answers_a_bare_pod_with_an_admission_review_response() {
    let path = fixture("gitlab-runner-17.9-job-pod.json");
    let out = run(&["mutate", path.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let response: Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(response["kind"], "AdmissionReview");
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(
        response["response"]["auditAnnotations"]["class"],
        "k8srunner"
    );
    let ops = decoded_patch(&response);
    assert!(
        ops.iter()
            .any(|op| op["path"] == "/spec/containers/0/env/-"
                && op["value"]["name"] == "DOCKER_HOST")
    );
}

#[test]
fn mutate_reads_yaml_from_stdin_and_echoes_the_review_uid() {
    let review = r#"
apiVersion: admission.k8s.io/v1
kind: AdmissionReview
request:
  uid: 3f1c-from-yaml
  kind: { group: "", version: v1, kind: Pod }
  namespace: ci
  operation: CREATE
  userInfo: { username: "system:serviceaccount:ci:runner" }
  object:
    metadata:
      name: runner-t3yz8bqk-project-1-concurrent-0-abcd1234
      labels:
        manager.runner.gitlab.com/name: k8srunner-gpu-v100
        manager.runner.gitlab.com/id-short: t3YZ8bQk
    spec:
      containers:
        - { name: build, image: alpine }
        - { name: helper, image: helper }
"#;
    let out = run(&["mutate", "-"], Some(review));
    assert!(out.status.success(), "{}", stderr(&out));
    let response: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(response["response"]["uid"], "3f1c-from-yaml");
    assert_eq!(
        response["response"]["auditAnnotations"]["class"],
        "k8srunner-gpu-v100"
    );
    let ops = decoded_patch(&response);
    assert!(
        ops.iter()
            .any(|op| op["path"] == "/spec/runtimeClassName" && op["value"] == "nvidia")
    );
}

#[test]
fn mutate_without_the_opt_in_label_changes_nothing() {
    let path = fixture("gitlab-runner-16.5-job-pod.json");
    let out = run(
        &[
            "mutate",
            "--namespace-labels",
            "team=astro",
            path.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let response: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"].get("patch").is_none());
    let out = run(
        &[
            "mutate",
            "--namespace-labels",
            "ci.skao.int/pod-policy=enabled,ci.skao.int/runner-class=ska-k8srunner-dp",
            path.to_str().expect("utf-8"),
        ],
        None,
    );
    let response: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        response["response"]["auditAnnotations"]["class"],
        "ska-k8srunner-dp"
    );
}

#[test]
fn explain_names_the_class_the_reason_and_each_change() {
    let path = fixture("gitlab-runner-17.9-no-resources-no-services.json");
    let out = run(
        &["mutate", "--explain", path.to_str().expect("utf-8")],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "class:     k8srunner (match rules: runner manager.runner.gitlab.com/name=k8srunner)",
        "spec.containers[build].resources: (none) → {\"limits\":{\"cpu\":\"5\",\"memory\":\"10Gi\"},\"requests\":{\"cpu\":\"1\",\"memory\":\"2Gi\"}}",
        "spec.initContainers[init-permissions].resources: (none) →",
        "metadata.annotations[\"ci.skao.int/class\"]: (none) → k8srunner",
        "spec.containers[build].env[+]: (none) → {\"name\":\"DOCKER_HOST\",\"value\":\"unix:///var/run/ci-dind/docker.sock\"}",
        "result:    allowed",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn explain_shows_a_denial_and_its_reason() {
    let pod = r#"{"metadata":{"name":"j","annotations":{"ci.skao.int/cpu-limit":"lots"}},"spec":{"containers":[{"name":"build"},{"name":"helper"}]}}"#;
    let out = run(&["mutate", "--explain"], Some(pod));
    let text = stdout(&out);
    assert!(text.contains("result:    DENIED"), "{text}");
    assert!(
        text.contains("ci.skao.int/cpu-limit: \"lots\" is not a valid quantity"),
        "{text}"
    );
}

#[test]
fn bad_input_is_an_error_on_stderr_with_a_non_zero_exit() {
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["mutate", "-"],
            Some("{not json"),
            "the input is not valid JSON",
        ),
        (
            &["mutate", "-"],
            Some(r#"{"kind":"Service","spec":{}}"#),
            "the input is a Service; give an AdmissionReview, a Pod, or a List of pods",
        ),
        (
            &["mutate", "/no/such/file.json"],
            None,
            "cannot read /no/such/file.json",
        ),
        (
            &["mutate", "--namespace-labels", "novalue", "-"],
            Some("{}"),
            "\"novalue\" is not key=value",
        ),
        (
            &["check-policy", "/no/such/policy.yaml"],
            None,
            "cannot read policy file /no/such/policy.yaml",
        ),
    ];
    for (args, stdin, needle) in cases {
        let out = run(args, *stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn check_policy_summarises_classes_and_rejects_a_bad_file_with_its_line() {
    let out = run(&["check-policy"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("<embedded default policy>: OK"), "{text}");
    assert!(text.contains("ska-k8srunner-dp-gpu-a100"), "{text}");
    assert!(text.contains("nvidia.com/gpu x1 (max 4)"), "{text}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("policy.yaml");
    std::fs::write(&bad, "defaultClass: a\nclasses:\n  a:\n    build: { limits: { cpu: \"1\" }, requests: { cpu: \"2\" } }\n    colour: blue\n").expect("write");
    let out = run(&["check-policy", bad.to_str().expect("utf-8")], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:5:5: unknown field `colour`", bad.display())),
        "{err}"
    );

    let mutate = run(
        &["mutate", "--policy", bad.to_str().expect("utf-8"), "-"],
        Some("{}"),
    );
    assert!(!mutate.status.success());
    assert!(stderr(&mutate).contains("unknown field `colour`"));
}

#[test]
fn default_policy_prints_the_embedded_policy_which_checks_clean() {
    let out = run(&["default-policy"], None);
    assert!(out.status.success());
    let embedded = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("crates/core/src/policy/default-policy.yaml"),
    )
    .expect("read");
    assert_eq!(stdout(&out), embedded);
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("policy.yaml");
    std::fs::write(&copy, stdout(&out)).expect("write");
    let check = run(&["check-policy", copy.to_str().expect("utf-8")], None);
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn check_policy_warns_about_footguns_and_refuses_a_class_without_ceilings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let risky = dir.path().join("risky.yaml");
    std::fs::write(
        &risky,
        "defaultClass: gpu\nciNodes: { tolerations: [ { operator: Exists } ] }\nclasses:\n  gpu:\n    match: { podLabels: { team: astro } }\n    max: { cpu: \"8\", memory: 16Gi }\n    gpu: { count: 1 }\n",
    )
    .expect("write");
    let out = run(&["check-policy", risky.to_str().expect("utf-8")], None);
    assert!(
        out.status.success(),
        "warnings are not errors: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    for needle in [
        "warning: classes.gpu.match.podLabels.team: a job can set this label",
        "warning: classes.gpu: a toleration with operator Exists and no key",
        "warning: defaultClass: gpu is a GPU class",
    ] {
        assert!(text.contains(needle), "{needle}\n{text}");
    }

    let open = dir.path().join("open.yaml");
    std::fs::write(
        &open,
        "defaultClass: a\nclasses:\n  a:\n    build: { limits: { cpu: \"1\" } }\n",
    )
    .expect("write");
    let out = run(&["check-policy", open.to_str().expect("utf-8")], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("classes.a.max: missing; every class states its ceiling for cpu and memory"),
        "{}",
        stderr(&out)
    );
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture")
}

#[test]
fn a_pod_as_kubectl_prints_it_is_decided_as_if_created_now() {
    let stored = fixture("kubectl-get-pod-16.5.json");
    let created = fixture("gitlab-runner-16.5-job-pod.json");
    let stored_out = run(&["mutate", stored.to_str().expect("utf-8")], None);
    assert!(stored_out.status.success(), "{}", stderr(&stored_out));
    let created_out = run(&["mutate", created.to_str().expect("utf-8")], None);
    let stored_response: Value = serde_json::from_str(&stdout(&stored_out)).expect("JSON");
    let created_response: Value = serde_json::from_str(&stdout(&created_out)).expect("JSON");
    // status, uid, resourceVersion, managedFields, nodeName change nothing.
    assert_eq!(
        decoded_patch(&stored_response),
        decoded_patch(&created_response)
    );

    let explained = run(
        &["mutate", "--explain", stored.to_str().expect("utf-8")],
        None,
    );
    let text = stdout(&explained);
    assert!(
        text.contains(
            "pod:       runner-xz3kq9ab-project-12345678-concurrent-3-k2m9p0qz in namespace gitlab"
        ),
        "{text}"
    );
    assert!(text.contains("result:    allowed"), "{text}");
}

#[test]
fn a_list_of_pods_is_explained_item_by_item_then_summarised() {
    let list = fixture("kubectl-get-pods-list.json");
    let out = run(&["mutate", list.to_str().expect("utf-8")], None);
    // One item is denied: the whole run exits 3, as a CI gate wants.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "--- item 0\npod:       runner-xz3kq9ab-project-12345678-concurrent-3-k2m9p0qz in namespace gitlab",
        "--- item 2\npod:       runner-xz3kq9ab-project-12345678-concurrent-4-q1w2e3r4",
        "message:   annotation ci.skao.int/cpu-limit: \"lots\" is not a valid quantity",
        "--- item 4\nerror:     a ConfigMap, not a Pod",
        "POD ",
        "5 pods: 2 mutated, 0 unchanged, 1 denied, 1 skipped, 1 unreadable",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let table: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("POD "))
        .skip(1)
        .take(5)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        table[0][..2],
        [
            "gitlab/runner-xz3kq9ab-project-12345678-concurrent-3-k2m9p0qz",
            "k8srunner"
        ]
    );
    assert_eq!(table[0][3], "mutated");
    assert!(
        table[0][2].parse::<usize>().is_ok_and(|n| n > 0),
        "{:?}",
        table[0]
    );
    assert_eq!(table[2][1..], ["k8srunner", "-", "DENIED"]);
    assert_eq!(
        table[3][0],
        "gitlab/ci-k8srunner-gitlab-runner-7d9f8c6b5-x2x7q"
    );
    assert_eq!(table[3][1..3], ["-", "-"]);
    assert_eq!(
        table[3][3..].join(" "),
        "skipped (not a GitLab Runner job pod)"
    );
    assert_eq!(
        table[4],
        [
            "gitlab/ci-k8srunner-gitlab-runner",
            "-",
            "-",
            "error",
            "(see",
            "above)"
        ]
    );
}

#[test]
fn a_pod_list_and_pods_already_changed_by_the_webhook_read_too() {
    let mut list: Value =
        serde_json::from_str(&fixture_text("kubectl-get-pods-list.json")).expect("JSON");
    // A PodList, as the API itself returns it: items without kind and apiVersion.
    list["kind"] = "PodList".into();
    let mut pod = list["items"][0].clone();
    for item in list["items"].as_array_mut().expect("items") {
        item.as_object_mut().map(|o| {
            o.remove("kind");
            o.remove("apiVersion")
        });
    }
    // The first pod, as the webhook left it when it was created.
    let once = run(&["mutate", "-"], Some(&pod.to_string()));
    let response: Value = serde_json::from_str(&stdout(&once)).expect("JSON");
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(decoded_patch(&response))).expect("a JSON patch");
    json_patch::patch(&mut pod, &patch).expect("applies");
    list["items"] = Value::Array(vec![pod, list["items"][1].clone()]);
    let out = run(&["mutate", "-"], Some(&list.to_string()));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("changes:   none (the pod already follows the policy)"),
        "{text}"
    );
    assert!(
        text.contains("2 pods: 1 mutated, 1 unchanged, 0 denied, 0 skipped, 0 unreadable"),
        "{text}"
    );

    let out = run(&["mutate", "-"], Some(r#"{"kind":"List"}"#));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the input is a List without an items list"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mutate_exits_3_on_a_denial_with_or_without_explain_and_0_when_allowed() {
    let denied = r#"{"metadata":{"name":"j","annotations":{"ci.skao.int/cpu-limit":"lots"}},"spec":{"containers":[{"name":"build"},{"name":"helper"}]}}"#;
    for args in [&["mutate"][..], &["mutate", "--explain"][..]] {
        let out = run(args, Some(denied));
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            !stdout(&out).is_empty(),
            "{args:?}: the answer is still printed"
        );
    }
    let allowed = fixture("job-pod-review.json");
    let out = run(
        &["mutate", "--explain", allowed.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_class_label_without_the_opt_in_label_is_not_dropped_silently() {
    let path = fixture("job-pod-review.json");
    let path = path.to_str().expect("utf-8");
    let out = run(
        &[
            "mutate",
            "--explain",
            "--namespace-labels",
            "ci.skao.int/runner-class=k8srunner-xlarge",
            path,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("skipped (namespace not opted in)"));
    let note = stderr(&out);
    assert!(
        note.contains("no ci.skao.int/pod-policy=enabled")
            && note
                .contains("the class label ci.skao.int/runner-class=k8srunner-xlarge is not used"),
        "{note}"
    );

    let out = run(
        &[
            "mutate",
            "--explain",
            "--namespace-labels",
            "ci.skao.int/pod-policy=enabled,ci.skao.int/runner-class=k8srunner-xlarge",
            path,
        ],
        None,
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "class:     k8srunner-xlarge (namespace label ci.skao.int/runner-class=k8srunner-xlarge)"
        ),
        "{}",
        stdout(&out)
    );
}

/// docs/policy.md's table: a class value fills gaps, only `max` lowers a pod's own value.
#[test]
fn explain_names_each_value_the_pod_set_and_only_max_lowers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = |requests: &str, max: &str| {
        let path = dir.path().join(format!("policy-{requests}-{max}.yaml"));
        std::fs::write(
            &path,
            format!(
                "defaultClass: a\nclasses:\n  a:\n    build: {{ requests: {{ memory: {requests} }} }}\n    max: {{ cpu: null, memory: {max} }}\n"
            ),
        )
        .expect("write");
        path
    };
    // The fixture's build container requests 4Gi of memory.
    let pod = fixture("job-pod-review.json");
    let explain = |policy: &std::path::Path| {
        let out = run(
            &[
                "mutate",
                "--explain",
                "--policy",
                policy.to_str().expect("utf-8"),
                pod.to_str().expect("utf-8"),
            ],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    for requests in ["3Gi", "6Gi"] {
        let text = explain(&policy(requests, "16Gi"));
        let kept = format!(
            "spec.containers[build].resources.requests.memory: kept 4Gi: set by the pod, within the class max 16Gi; class value {requests} applies only where a pod sets none"
        );
        assert!(text.contains(&kept), "missing {kept:?} in:\n{text}");
    }
    let text = explain(&policy("2Gi", "3Gi"));
    assert!(
        text.contains("spec.containers[build].resources.requests.memory: 4Gi → 3Gi"),
        "{text}"
    );
    assert!(!text.contains("kept 4Gi"), "{text}");
}

#[test]
fn explain_names_the_match_block_and_the_runner_token_that_chose_the_class() {
    let mut pod: Value =
        serde_json::from_str(&fixture_text("gitlab-runner-16.5-job-pod.json")).expect("JSON");
    pod["metadata"]["name"] = "runner-todo0002-project-1-concurrent-0-abcdefgh".into();
    pod["metadata"]["labels"]["pod"] = "runner-todo0002-project-1-concurrent-0".into();
    let policy =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/policies/ska-techops.yaml");
    let out = run(
        &[
            "mutate",
            "--explain",
            "--policy",
            policy.to_str().expect("utf-8"),
            "-",
        ],
        Some(&pod.to_string()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("class:     k8srunner-large (match[0] (block 1 of 3): runner token todo0002 (pod name \"runner-todo0002-project-1-concurrent-0-abcdefgh\", label pod agrees))"),
        "{text}"
    );
}

#[test]
fn check_policy_refuses_a_shared_socket_directory_and_suggests_file_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "defaultClass: a\ndocker: { socketPath: /var/run/docker-for-gitlab.sock }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
    )
    .expect("write");
    let out = run(&["check-policy", path.to_str().expect("utf-8")], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:2:", path.display()))
            && err.contains("\"/var/run/docker-for-gitlab.sock\" is in /var/run, a directory other programs share")
            && err.contains("Add `mount: file`"),
        "{err}"
    );
}
