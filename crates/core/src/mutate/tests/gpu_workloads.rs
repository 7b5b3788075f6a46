//! `gpuWorkloads`: GPU pods that are not job pods, in selected namespaces.

use std::collections::BTreeSet;

use super::*;

/// A Deployment-style pod (not a job pod) asking for one GPU by its limit only.
fn gpu_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "trainer-7d9f8-",
            "labels": {"app": "trainer"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "trainer-7d9f8", "uid": "u"}]
        },
        "spec": {
            "containers": [{
                "name": "cuda",
                "image": "nvcr.io/nvidia/cuda:12",
                "x-unknown": {"kept": true},
                "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "2", "memory": "8Gi"}}
            }],
            "someFutureField": [1, 2]
        }
    })
}

fn in_namespace(namespace: &'static str, labels: Option<BTreeMap<String, String>>) -> Req {
    Req {
        namespace,
        user: "system:serviceaccount:kube-system:replicaset-controller",
        labels,
        ..Req::default()
    }
}

/// An unlabelled namespace, as a CI job creates it.
fn ci_namespace() -> Req {
    in_namespace("ci-ska-tango-1234", Some(BTreeMap::new()))
}

/// Runs with namespace facts that `Req` cannot express, checking idempotence too.
fn run_facts(
    policy: &Policy,
    namespace: &'static str,
    facts: NamespaceFacts<'_>,
    pod: &Value,
) -> Out {
    let req = Req {
        namespace,
        ..Req::default()
    };
    run_with_facts(policy, &req, facts, pod)
}

#[test]
fn a_gpu_pod_in_an_unlabelled_ci_namespace_gets_the_gpu_placement() {
    let out = run_with(&DEFAULT, &ci_namespace(), &gpu_pod());
    assert_eq!(out.class(), "gpu-workloads");
    let Out::Allow { reason, .. } = &out else {
        unreachable!()
    };
    assert_eq!(
        reason.to_string(),
        "gpuWorkloads: not a job pod, asks for a GPU; namespace ci-ska-tango-1234 matches ci-*"
    );
    let pod = out.pod();
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"nvidia.com/gpu": "true"})
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([{"key": "nvidia.com/gpu", "operator": "Exists"}])
    );
    assert_eq!(pod["spec"]["runtimeClassName"], "nvidia");
    // The request follows the limit; CPU and memory are not touched (no request added).
    assert_eq!(
        container(pod, "cuda")["resources"],
        json!({"limits": {"nvidia.com/gpu": "1", "cpu": "2", "memory": "8Gi"},
               "requests": {"nvidia.com/gpu": "1"}})
    );
    // Nothing of the job-pod path: no audit annotations, no Docker, no limits env.
    assert!(pod["metadata"].get("annotations").is_none());
    assert!(container(pod, "cuda").get("env").is_none());
    assert!(pod["spec"].get("volumes").is_none());
    assert_eq!(container(pod, "cuda")["x-unknown"], json!({"kept": true}));
    assert_eq!(pod["spec"]["someFutureField"], json!([1, 2]));
    assert!(out.warnings().is_empty());
}

#[test]
fn a_missing_limit_is_filled_from_the_request_in_any_container() {
    let mut pod = gpu_pod();
    pod["spec"]["initContainers"] =
        json!([{"name": "warm", "resources": {"requests": {"nvidia.com/gpu": 2}}}]);
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"nvidia.com/gpu": "1"}});
    pod["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "sidecar", "image": "busybox"}));
    let out = run_with(&DEFAULT, &ci_namespace(), &pod);
    let pod = out.pod();
    assert_eq!(
        container(pod, "warm")["resources"],
        json!({"requests": {"nvidia.com/gpu": 2}, "limits": {"nvidia.com/gpu": "2"}})
    );
    assert_eq!(
        container(pod, "cuda")["resources"],
        json!({"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}})
    );
    assert!(container(pod, "sidecar").get("resources").is_none());
}

#[test]
fn equal_request_and_limit_are_left_as_they_are() {
    let mut pod = gpu_pod();
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": 2}});
    let out = run_with(&DEFAULT, &ci_namespace(), &pod);
    assert_eq!(
        container(out.pod(), "cuda")["resources"],
        pod["spec"]["containers"][0]["resources"]
    );
}

#[test]
fn a_request_different_from_the_limit_is_denied_naming_both() {
    let mut pod = gpu_pod();
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "1"}});
    let out = run_with(&DEFAULT, &ci_namespace(), &pod);
    assert_eq!(out.class(), "gpu-workloads");
    assert_eq!(
        out.denial(),
        "spec.containers[cuda].resources: limits.nvidia.com/gpu is 2 but requests.nvidia.com/gpu is 1; Kubernetes needs the request of nvidia.com/gpu to equal its limit. Set both to the number of GPUs the container needs, or set only the limit"
    );
}

#[test]
fn a_gpu_count_that_is_not_a_whole_number_is_denied() {
    for bad in ["500m", "1.5", "-1", "lots"] {
        let mut pod = gpu_pod();
        pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = json!(bad);
        let out = run_with(&DEFAULT, &ci_namespace(), &pod);
        assert!(
            out.denial()
                .starts_with("spec.containers[cuda].resources.limits.nvidia.com/gpu: ")
                && out
                    .denial()
                    .ends_with("is not a whole number of devices (such as 1)"),
            "{bad}: {}",
            out.denial()
        );
    }
}

#[test]
fn pods_asking_for_no_gpu_are_skipped() {
    let mut zero = gpu_pod();
    zero["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = json!("0");
    let mut cpu_only = gpu_pod();
    cpu_only["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "1"}});
    for pod in [zero, cpu_only] {
        assert!(matches!(
            run_with(&DEFAULT, &ci_namespace(), &pod),
            Out::Skip(SkipReason::NoGpuRequest)
        ));
    }
}

#[test]
fn existing_placement_is_kept_or_replaced_with_a_warning() {
    let mut pod = gpu_pod();
    pod["spec"]["nodeSelector"] = json!({"nvidia.com/gpu": "false", "zone": "a"});
    pod["spec"]["tolerations"] = json!([{"key": "nvidia.com/gpu", "operator": "Exists"}]);
    pod["spec"]["runtimeClassName"] = json!("runc");
    let out = run_with(&DEFAULT, &ci_namespace(), &pod);
    let patched = out.pod();
    assert_eq!(
        patched["spec"]["nodeSelector"],
        json!({"nvidia.com/gpu": "true", "zone": "a"})
    );
    assert_eq!(patched["spec"]["tolerations"], pod["spec"]["tolerations"]);
    assert_eq!(patched["spec"]["runtimeClassName"], "nvidia");
    assert_eq!(
        out.warnings(),
        [
            "nodeSelector nvidia.com/gpu=\"false\" replaced by nvidia.com/gpu=true (class gpu-workloads)",
            "runtimeClassName \"runc\" replaced by nvidia (class gpu-workloads needs it for GPUs)"
        ]
    );
}

#[test]
fn namespaces_are_selected_by_name_glob_or_by_labels() {
    // By label, in a namespace whose name matches no glob.
    let labelled = BTreeMap::from([(
        "ci.skao.int/gpu-workloads".to_string(),
        "enabled".to_string(),
    )]);
    let out = run_with(
        &DEFAULT,
        &in_namespace("dp-shared", Some(labelled.clone())),
        &gpu_pod(),
    );
    assert_eq!(out.class(), "gpu-workloads");
    let Out::Allow { reason, .. } = &out else {
        unreachable!()
    };
    assert!(
        reason
            .to_string()
            .ends_with("namespace labels ci.skao.int/gpu-workloads=enabled")
    );
    // Neither: not ours at all (skipped before the pod is read).
    assert!(matches!(
        run_with(
            &DEFAULT,
            &in_namespace("dp-shared", Some(BTreeMap::new())),
            &gpu_pod()
        ),
        Out::Skip(SkipReason::NamespaceNotOptedIn)
    ));
    // Opted in for job pods, but not a GPU workloads namespace: not a job pod.
    assert!(matches!(
        run_with(&DEFAULT, &in_namespace("gitlab", opted_in()), &gpu_pod()),
        Out::Skip(SkipReason::NotJobPod)
    ));
    // Without cluster access only names are known: a label-selected namespace is not.
    assert!(matches!(
        run_facts(&DEFAULT, "dp-shared", NamespaceFacts::NameOnly, &gpu_pod()),
        Out::Skip(SkipReason::NamespaceNotOptedIn)
    ));
    let out = run_facts(
        &DEFAULT,
        "integration-7",
        NamespaceFacts::NameOnly,
        &gpu_pod(),
    );
    assert_eq!(out.class(), "gpu-workloads");
}

#[test]
fn system_namespaces_and_the_webhook_namespace_are_never_selected() {
    let mut policy = policy_from(
        "defaultClass: a\nclasses:\n  a: { max: { cpu: null, memory: null } }\ngpuWorkloads:\n  namespaces: { names: ['*'] }\n  nodeSelector: { gpu: 'yes' }\n",
    );
    assert_eq!(
        run_with(
            &policy,
            &in_namespace("anything", Some(BTreeMap::new())),
            &gpu_pod()
        )
        .class(),
        "gpu-workloads"
    );
    policy.set_webhook_namespace("ci-pod-webhook");
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "ci-pod-webhook",
    ] {
        let req = in_namespace(ns, Some(BTreeMap::new()));
        assert!(
            matches!(
                run_with(&policy, &req, &gpu_pod()),
                Out::Skip(SkipReason::NamespaceNotOptedIn)
            ),
            "{ns}"
        );
    }
}

#[test]
fn job_pods_keep_their_class_and_need_the_opt_in() {
    let job = with_runner(job_pod(), "k8srunner-gpu-v100");
    // Opted in: the runner class, as ever.
    let out = run_with(&DEFAULT, &in_namespace("ci-x", opted_in()), &job);
    assert_eq!(out.class(), "k8srunner-gpu-v100");
    // A GPU workloads namespace that did not opt in: a job pod there is not ours, even
    // when it asks for a GPU, with labels known or (second webhook entry, no cluster
    // access) only the name.
    let mut gpu_job = job.clone();
    gpu_job["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "1"}});
    assert!(matches!(
        run_with(&DEFAULT, &ci_namespace(), &gpu_job),
        Out::Skip(SkipReason::NamespaceNotOptedIn)
    ));
    assert!(matches!(
        run_facts(&DEFAULT, "ci-x", NamespaceFacts::NameOnly, &gpu_job),
        Out::Skip(SkipReason::NamespaceNotOptedIn)
    ));
}

/// A GPU job pod in an opted-in namespace matches both webhook entries; only the
/// opted-in entry decides it, so its patch, warn-mode warnings and metrics come once.
#[test]
fn a_gpu_job_pod_is_decided_through_the_opted_in_entry_only() {
    let mut gpu_job = with_runner(job_pod(), "k8srunner-gpu-v100");
    gpu_job["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "1"}});
    let req = in_namespace("ci-x", opted_in());
    let body = review_bytes(&req, &gpu_job);
    let review = admission::parse(&body).expect("valid review");
    let labels = opted_in().expect("labels");
    let through = |entry| Facts {
        namespace: NamespaceFacts::Labels(&labels),
        runtime_classes: RuntimeClassFacts::Unknown,
        entry,
    };
    let decided = decide(&DEFAULT, through(Entry::OptedIn), &review.request).expect("readable");
    assert!(
        matches!(&decided, Decision::Allow(m) if m.chosen.class.name == "k8srunner-gpu-v100"),
        "{decided:?}"
    );
    let decided =
        decide(&DEFAULT, through(Entry::GpuWorkloads), &review.request).expect("readable");
    assert!(
        matches!(decided, Decision::Skip(SkipReason::JobPodOnGpuEntry)),
        "{decided:?}"
    );
    // A GPU pod that is not a job pod is still the GPU entry's.
    let body = review_bytes(&ci_namespace(), &gpu_pod());
    let review = admission::parse(&body).expect("valid review");
    let decided =
        decide(&DEFAULT, through(Entry::GpuWorkloads), &review.request).expect("readable");
    assert!(matches!(decided, Decision::Allow(_)), "{decided:?}");
}

#[test]
fn the_class_path_also_keeps_gpu_request_equal_to_limit_on_build() {
    for resources in [
        json!({"requests": {"nvidia.com/gpu": "2"}}),
        json!({"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "3"}}),
        json!({"limits": {"nvidia.com/gpu": "4"}}),
    ] {
        let mut pod = with_runner(job_pod(), "ska-k8srunner-dp-gpu-a100");
        pod["spec"]["containers"][0]["resources"] = resources.clone();
        let out = run(&pod);
        let r = &container(out.pod(), "build")["resources"];
        let limit = &r["limits"]["nvidia.com/gpu"];
        let request = &r["requests"]["nvidia.com/gpu"];
        assert!(limit.is_string(), "{resources}: {r}");
        assert!(
            request.is_null() || request == limit,
            "{resources}: request {request} != limit {limit}"
        );
    }
}

#[test]
fn without_the_section_gpu_pods_are_left_alone() {
    let policy =
        policy_from("defaultClass: a\nclasses:\n  a: { max: { cpu: null, memory: null } }\n");
    assert!(matches!(
        run_with(&policy, &ci_namespace(), &gpu_pod()),
        Out::Skip(SkipReason::NamespaceNotOptedIn)
    ));
    assert!(matches!(
        run_with(&policy, &in_namespace("ci-x", None), &gpu_pod()),
        Out::Skip(SkipReason::NotJobPod)
    ));
}

#[test]
fn a_gpu_pod_is_denied_with_the_fix_when_its_runtime_class_is_missing() {
    let labels = BTreeMap::new();
    let body = review_bytes(&ci_namespace(), &gpu_pod());
    let review = admission::parse(&body).expect("valid review");
    let decide_with = |names: &BTreeSet<String>| {
        let facts = Facts {
            namespace: NamespaceFacts::Labels(&labels),
            runtime_classes: RuntimeClassFacts::Known(names),
            entry: Entry::OptedIn,
        };
        decide(&DEFAULT, facts, &review.request).expect("readable")
    };

    let kata = BTreeSet::from(["kata".to_string()]);
    let Decision::Deny {
        message, refused, ..
    } = decide_with(&kata)
    else {
        panic!("a GPU pod the API server would refuse must be denied");
    };
    assert_eq!(refused, Some(RefusedChange::RuntimeClass));
    assert!(
        message.starts_with("gpuWorkloads needs RuntimeClass \"nvidia\" (gpuWorkloads.runtimeClassName in the policy)"),
        "{message}"
    );

    let nvidia = BTreeSet::from(["nvidia".to_string()]);
    assert!(matches!(decide_with(&nvidia), Decision::Allow(_)));
}

/// Issue 25, point 7: a GPU workload sees the GPUs the device plugin allocates, not the
/// ones its env names: the NVIDIA toolkit's variables go as from a job pod.
#[test]
fn gpu_workloads_lose_the_nvidia_toolkit_variables_too() {
    let mut pod = gpu_pod();
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
        {"name": "MODEL", "value": "llama"},
        {"name": "NVIDIA_IMEX_CHANNELS", "value": "0"},
        {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"}
    ]);
    pod["spec"]["initContainers"] =
        json!([{"name": "fetch", "env": [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}]}]);
    let out = run_with(&DEFAULT, &ci_namespace(), &pod);
    assert_eq!(out.class(), "gpu-workloads");
    let names = |c: &str| -> Vec<String> {
        env(out.pod(), c)
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    };
    assert_eq!(names("cuda"), ["MODEL", "NVIDIA_DRIVER_CAPABILITIES"]);
    assert!(names("fetch").is_empty());
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.starts_with("cuda: env NVIDIA_VISIBLE_DEVICES=\"all\" removed")),
        "{:?}",
        out.warnings()
    );
}

/// Decides `pod` in `namespace` (labels known) as a review through the GPU entry.
fn through_gpu_entry<'p>(
    policy: &'p Policy,
    namespace: &'static str,
    labels: &BTreeMap<String, String>,
    pod: &Value,
) -> Decision<'p> {
    let body = review_bytes(&in_namespace(namespace, None), pod);
    let review = admission::parse(&body).expect("valid review");
    let facts = Facts {
        namespace: NamespaceFacts::Labels(labels),
        runtime_classes: RuntimeClassFacts::Unknown,
        entry: Entry::GpuWorkloads,
    };
    decide(policy, facts, &review.request).expect("readable")
}

/// Issue 25, point 8: a pod shaped like a job pod (`build` and `helper`, or only the
/// runner-name label) asking for a GPU in a `ci-*` namespace that did not opt in was
/// skipped on both entries, so it ran unplaced and kept `NVIDIA_VISIBLE_DEVICES=all`.
/// Where the namespace did not opt in, no runner class applies: the GPU entry decides
/// it as a GPU workload.
#[test]
fn job_shaped_gpu_pods_where_no_one_opted_in_are_gpu_workloads() {
    let mut job_shaped = job_pod();
    job_shaped["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "1"}});
    job_shaped["spec"]["containers"][0]["env"] =
        json!([{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]);
    let labelled_only = json!({
        "metadata": {"name": "runner-like", "labels": {"manager.runner.gitlab.com/name": "k8srunner-gpu-v100"}},
        "spec": {"containers": [{"name": "main", "resources": {"requests": {"nvidia.com/gpu": "2"}}}]}
    });
    let unlabelled = BTreeMap::new();
    for pod in [job_shaped, labelled_only] {
        let decided = through_gpu_entry(&DEFAULT, "ci-ska-tango-1234", &unlabelled, &pod);
        let Decision::Allow(m) = &decided else {
            panic!("{decided:?}");
        };
        assert_eq!(m.chosen.class.name, "gpu-workloads");
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &m.patch.operations()).expect("applies");
        assert_eq!(
            patched["spec"]["nodeSelector"],
            json!({"nvidia.com/gpu": "true"})
        );
        assert_eq!(patched["spec"]["runtimeClassName"], "nvidia");
        let first = &patched["spec"]["containers"][0];
        assert_eq!(
            first["resources"]["limits"]["nvidia.com/gpu"],
            first["resources"]["requests"]["nvidia.com/gpu"]
        );
        assert!(first.get("env").is_none_or(|e| e == &json!([])), "{first}");
        // No runner class's changes: no audit annotations, no Docker.
        assert!(
            patched["metadata"]["annotations"]
                .get("ci.skao.int/class")
                .is_none()
        );
        assert!(patched["spec"].get("volumes").is_none());
        // Once placed, a second review changes nothing.
        assert!(matches!(
            through_gpu_entry(&DEFAULT, "ci-ska-tango-1234", &unlabelled, &patched),
            Decision::Allow(m) if m.patch.is_empty()
        ));
    }
}

/// Issue 25, point 8: MIG profiles and AMD GPUs are GPUs too; the default policy's
/// gpuWorkloads names them (and the GPU entry's matchConditions send them).
#[test]
fn pods_asking_for_mig_profiles_or_amd_gpus_are_gpu_workloads() {
    for resource in [
        "nvidia.com/mig-1g.5gb",
        "nvidia.com/mig-3g.40gb",
        "amd.com/gpu",
    ] {
        let mut pod = gpu_pod();
        pod["spec"]["containers"][0]["resources"] = json!({"limits": {resource: "1"}});
        let out = run_with(&DEFAULT, &ci_namespace(), &pod);
        assert_eq!(out.class(), "gpu-workloads", "{resource}");
        let pod = out.pod();
        assert_eq!(pod["spec"]["runtimeClassName"], "nvidia", "{resource}");
        assert_eq!(
            container(pod, "cuda")["resources"]["requests"][resource],
            "1",
            "{resource}"
        );
    }
    // Not a GPU by any name: skipped.
    let mut pod = gpu_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"habana.ai/gaudi": "1"}});
    assert!(matches!(
        run_with(&DEFAULT, &ci_namespace(), &pod),
        Out::Skip(SkipReason::NoGpuRequest)
    ));
}
