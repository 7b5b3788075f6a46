use super::*;

fn glob(p: &str) -> NameGlob {
    NameGlob::parse(p).expect("valid glob")
}

#[test]
fn globs_match_whole_names() {
    for (pattern, name, expected) in [
        ("ci-*", "ci-ska-tango-1234", true),
        ("ci-*", "ci-", true),
        ("ci-*", "xci-a", false),
        ("ci-*", "ci", false),
        ("integration-*", "integration-dp-7", true),
        ("*-gpu", "dp-gpu", true),
        ("*-gpu", "dp-gpu-2", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("a*b*c", "abcbc", true),
        ("ci-?", "ci-1", true),
        ("ci-?", "ci-12", false),
        ("*", "anything", true),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        assert_eq!(glob(pattern).matches(name), expected, "{pattern} ~ {name}");
    }
}

#[test]
fn globs_are_namespace_characters_only() {
    for bad in ["", "CI-*", "ci_*", "ci/*", "ci-[0-9]", &"a".repeat(64)] {
        assert!(NameGlob::parse(bad).is_err(), "{bad:?}");
    }
}

fn parse(section: &str) -> Result<crate::policy::Policy, String> {
    let yaml = format!(
        "defaultClass: a\nclasses:\n  a: {{ max: {{ cpu: null, memory: null }} }}\ngpuWorkloads:\n{section}"
    );
    crate::policy::Policy::parse(&yaml, "p.yaml").map_err(|e| e.to_string())
}

#[test]
fn the_section_reads_as_the_issue_writes_it() {
    let policy = parse(
        "  namespaces:\n    names: [\"ci-*\", \"integration-*\"]\n    labels: { ci.skao.int/gpu-workloads: enabled }\n  resource: nvidia.com/gpu\n  nodeSelector: { nvidia.com/gpu: \"true\" }\n  tolerations: [ { key: nvidia.com/gpu, operator: Exists } ]\n  runtimeClassName: nvidia\n",
    )
    .expect("valid");
    let g = policy.gpu_workloads.expect("on");
    assert_eq!(g.names, [glob("ci-*"), glob("integration-*")]);
    assert_eq!(
        g.labels
            .get("ci.skao.int/gpu-workloads")
            .map(String::as_str),
        Some("enabled")
    );
    assert_eq!(g.resource, "nvidia.com/gpu");
    assert_eq!(g.placement.name, GPU_WORKLOADS_CLASS);
    assert_eq!(g.placement.node_selector.len(), 1);
    assert_eq!(g.placement.tolerations.len(), 1);
    let runtime = g.placement.gpu.and_then(|gpu| gpu.runtime_class_name);
    assert_eq!(runtime.as_deref(), Some("nvidia"));
    let absent = crate::policy::Policy::parse(
        "defaultClass: a\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
        "p",
    )
    .expect("valid");
    assert!(absent.gpu_workloads.is_none(), "absent means off");
}

#[test]
fn mistakes_are_named_with_their_line() {
    for (section, expected) in [
        (
            "  namespaces: {}\n",
            "p.yaml:5:15: gpuWorkloads.namespaces: give names",
        ),
        (
            "  namespaces: { names: [CI-*] }\n",
            "gpuWorkloads.namespaces.names: \"CI-*\" is not a namespace name pattern",
        ),
        (
            "  namespaces: { labels: { \"a b\": c } }\n",
            "gpuWorkloads.namespaces.labels: \"a b\" is not a valid label key",
        ),
        (
            "  namespaces: { names: [x] }\n  resource: gpu\n",
            "gpuWorkloads.resource: \"gpu\" is not an extended resource name",
        ),
        (
            "  namespaces: { names: [x] }\n  runtimeClassName: NVIDIA\n",
            "gpuWorkloads.runtimeClassName: \"NVIDIA\" is not a valid RuntimeClass name",
        ),
        (
            "  namespaces: { names: [x] }\n  tolerations: [ { operator: Equal } ]\n",
            "gpuWorkloads.tolerations[0]: an empty key needs operator Exists",
        ),
        (
            "  namespaces: { names: [x] }\n  nodeSelectors: {}\n",
            "unknown field",
        ),
    ] {
        let err = parse(section).expect_err(section);
        assert!(err.contains(expected), "{section}: {err}");
    }
    let taken = crate::policy::Policy::parse(
        "defaultClass: gpu-workloads\nclasses:\n  gpu-workloads: {}\ngpuWorkloads: { namespaces: { names: [x] } }\n",
        "p.yaml",
    )
    .expect_err("class name taken")
    .to_string();
    assert!(
        taken
            .contains("p.yaml:3:3: classes: \"gpu-workloads\" is the name gpuWorkloads pods go by"),
        "{taken}"
    );
}

#[test]
fn the_webhook_namespace_joins_the_never_list() {
    let mut policy = parse("  namespaces: { names: ['*'] }\n").expect("valid");
    policy.set_webhook_namespace("ci-pod-webhook");
    let g = policy.gpu_workloads.expect("on");
    assert!(g.name_match("ci-pod-webhook").is_none());
    assert!(g.name_match("ci-pod-webhook-2").is_some());
}

#[test]
fn system_namespaces_are_never_selected_even_by_a_catch_all() {
    let g = GpuWorkloads {
        names: vec![glob("*")],
        labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
        never: SYSTEM_NAMESPACES.iter().map(|n| n.to_string()).collect(),
        resource: DEFAULT_RESOURCE.to_string(),
        placement: RunnerClass::default(),
    };
    for ns in SYSTEM_NAMESPACES {
        assert!(g.name_match(ns).is_none(), "{ns}");
        assert!(!g.labels_may_select(ns), "{ns}");
    }
    assert!(g.name_match("").is_none());
    assert_eq!(g.name_match("ci-x").map(NameGlob::as_str), Some("*"));
}
