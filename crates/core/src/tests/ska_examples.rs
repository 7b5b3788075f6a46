//! The SKA example policies (`examples/policies/ska-*.yaml`): they check clean, and the
//! GitLab Runner 16.5 job pod of each class's runner (its short token in the pod name,
//! no runner-name label, no resources from the runner) comes out with that class. Each run is compared with a reviewed
//! golden response in `tests/golden/ska/` (regenerate with `UPDATE_GOLDEN=1` only after
//! reviewing the change), and its key facts are asserted in code.

use crate::admission::{self, PodReview};
use crate::mutate::NamespaceFacts;
use crate::policy::Policy;
use base64::Engine as _;
use serde_json::{Value, json};

use super::support::root;

fn policy(name: &str) -> Policy {
    let path = root().join("examples/policies").join(name);
    let text = std::fs::read_to_string(&path).expect("example policy");
    Policy::parse(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{name} does not check clean:\n{e}"))
}

/// The 16.5 fixture as runner `token`'s job pod, once the runner's config no longer sets
/// resources (docs/ska-migration.md, step 3): the class's values apply.
fn job_pod_of(token: &str) -> Value {
    let path = root().join("tests/fixtures/gitlab-runner-16.5-job-pod.json");
    let mut pod: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("JSON");
    pod["metadata"]["name"] = json!(format!(
        "runner-{token}-project-12345678-concurrent-3-k2m9p0qz"
    ));
    pod["metadata"]["labels"]["pod"] =
        json!(format!("runner-{token}-project-12345678-concurrent-3"));
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            c.as_object_mut().map(|c| c.remove("resources"));
        }
    }
    pod
}

/// The response (patch decoded) and the patched pod.
fn review(policy: &Policy, pod: &Value, user: &str) -> (Value, Value) {
    let body = PodReview {
        uid: "ska-example",
        ..PodReview::create("gitlab", pod).by(user)
    }
    .to_json();
    let parsed = admission::parse(&body).expect("review");
    let answer =
        admission::respond(policy, NamespaceFacts::TrustSelector, &parsed).expect("answer");
    let mut response: Value = serde_json::from_slice(&answer.body).expect("json");
    let mut patched = pod.clone();
    if let Some(Value::String(b64)) = response["response"]
        .as_object_mut()
        .and_then(|r| r.remove("patch"))
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
        json_patch::patch(&mut patched, &ops).expect("applies");
        response["response"]["patch (decoded)"] = serde_json::from_slice(&bytes).expect("json");
    }
    (response["response"].clone(), patched)
}

fn container<'v>(pod: &'v Value, name: &str) -> &'v Value {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// (policy file, class, placeholder token, build limits, GPUs)
const CASES: [(&str, &str, &str, &str, Option<u32>); 6] = [
    (
        "ska-techops.yaml",
        "k8srunner",
        "todo0001",
        r#"{"cpu":"5","memory":"10Gi"}"#,
        None,
    ),
    (
        "ska-techops.yaml",
        "k8srunner-large",
        "todo0002",
        r#"{"memory":"32Gi"}"#,
        None,
    ),
    (
        "ska-techops.yaml",
        "k8srunner-xlarge",
        "todo0003",
        r#"{"memory":"128Gi"}"#,
        None,
    ),
    (
        "ska-techops.yaml",
        "k8srunner-gpu-v100",
        "todo0004",
        r#"{"cpu":"5","memory":"10Gi","nvidia.com/gpu":"1"}"#,
        Some(1),
    ),
    (
        "ska-dp.yaml",
        "ska-k8srunner-dp",
        "todo0101",
        r#"{"cpu":"3","memory":"1Gi"}"#,
        None,
    ),
    (
        "ska-dp.yaml",
        "ska-k8srunner-dp-gpu-a100",
        "todo0102",
        r#"{"cpu":"5","memory":"10Gi","nvidia.com/gpu":"1"}"#,
        Some(1),
    ),
];

#[test]
fn each_class_of_the_ska_examples_takes_its_runners_16_5_job_pod() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (file, class, token, limits, gpus) in CASES {
        let policy = policy(file);
        let (response, pod) = review(
            &policy,
            &job_pod_of(token),
            "system:serviceaccount:gitlab:someone-else",
        );
        assert_eq!(response["allowed"], true, "{class}: {response:#}");
        assert_eq!(response["auditAnnotations"]["class"], class, "{class}");
        let build = container(&pod, "build");
        let want: Value = serde_json::from_str(limits).expect("limits");
        assert_eq!(build["resources"]["limits"], want, "{class} build limits");
        // The host daemon's socket, and only it, next to the runner's own docker volume.
        let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
        assert!(volumes.contains(&json!({"name": "docker-for-gitlab", "hostPath": {"path": "/var/run/docker-for-gitlab.sock", "type": "Socket"}})), "{class}");
        assert!(
            volumes.iter().all(|v| v["hostPath"]["path"] != "/var/run"),
            "{class}"
        );
        assert!(
            build["env"].as_array().expect("env").contains(
                &json!({"name": "DOCKER_HOST", "value": "unix:///var/run/docker-for-gitlab.sock"})
            ),
            "{class}"
        );
        assert_eq!(
            pod["spec"]["nodeSelector"]["node-role.skatelescope.org/ci-worker"],
            "true"
        );
        assert_eq!(
            pod["spec"]["runtimeClassName"].as_str(),
            gpus.map(|_| "nvidia"),
            "{class} runtime class"
        );

        let path = root()
            .join("tests/golden/ska")
            .join(format!("{class}.json"));
        let actual = serde_json::to_string_pretty(&response).expect("json") + "\n";
        let actual = actual.replace(&policy.hash, "@POLICY_HASH@");
        if update {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
            std::fs::write(&path, actual).expect("write golden");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(actual.as_str()) {
            failures.push(format!(
                "{class}: the response differs from {}",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\n(re-generate with UPDATE_GOLDEN=1 only after reviewing the change)"
    );
}

#[test]
fn the_release_service_account_chooses_the_class_when_the_token_does_not() {
    for (file, class, _, _, _) in CASES {
        let policy = policy(file);
        let user = format!("system:serviceaccount:gitlab:{class}-gitlab-runner");
        let (response, _) = review(&policy, &job_pod_of("zzzzzzzz"), &user);
        assert_eq!(response["auditAnnotations"]["class"], class, "{user}");
    }
    // Neither: the smallest class of the cluster.
    for (file, default) in [
        ("ska-techops.yaml", "k8srunner"),
        ("ska-dp.yaml", "ska-k8srunner-dp"),
    ] {
        let (response, _) = review(
            &policy(file),
            &job_pod_of("zzzzzzzz"),
            "system:serviceaccount:gitlab:other",
        );
        assert_eq!(response["auditAnnotations"]["class"], default, "{file}");
    }
}

/// Issue 25, point 4: under ska-dp.yaml, a 16.x job pod of an unlisted runner carrying
/// a job-set `manager.runner.gitlab.com/name=ska-k8srunner-dp-gpu-a100` (possible where
/// the runner allows pod label overwrites) got the A100 class and a GPU. The label is
/// trusted only beside a `manager.runner.gitlab.com/id-short` that agrees with the
/// pod's name, which GitLab Runner 17.9+ sets and a job cannot.
#[test]
fn a_forged_runner_name_label_gets_no_gpu_class() {
    let policy = policy("ska-dp.yaml");
    let mut pod = job_pod_of("zzzzzzzz");
    pod["metadata"]["labels"]["manager.runner.gitlab.com/name"] =
        json!("ska-k8srunner-dp-gpu-a100");
    let (response, patched) = review(&policy, &pod, "system:serviceaccount:gitlab:other");
    assert_eq!(response["auditAnnotations"]["class"], "ska-k8srunner-dp");
    assert!(
        container(&patched, "build")["resources"]["limits"]
            .get("nvidia.com/gpu")
            .is_none()
    );
    // The 17.9+ pod of that runner, id-short and all, keeps its class.
    pod["metadata"]["labels"]["manager.runner.gitlab.com/id-short"] = json!("zzzzzzzz");
    let (response, _) = review(&policy, &pod, "system:serviceaccount:gitlab:other");
    assert_eq!(
        response["auditAnnotations"]["class"],
        "ska-k8srunner-dp-gpu-a100"
    );
}
