//! The manifests agree with the binary and the policy: the webhook's namespaceSelector
//! uses the policy's opt-in label, Service and container ports match what `serve`
//! listens on, the probe paths exist on the admin server, the ConfigMap holds the
//! embedded policy, and the node Docker daemon puts its socket where the policy looks.
//! (`scripts/validate-manifests.sh` renders and schema-checks them; this ties them to
//! the code.)

use std::path::PathBuf;

use ci_pod_webhook::cli::serve::ServeArgs;
use ci_pod_webhook::cli::{Cli, Command};
use ci_pod_webhook::doctor::network;
use ci_pod_webhook::doctor::report::Status;
use ci_pod_webhook_core::policy::{
    DEFAULT_POLICY_YAML, DockerMode, OPT_IN_VALUE, OPT_IN_WARN_VALUE, Policy,
};
use clap::Parser;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use serde_json::{Value, json};

fn manifest(path: &str) -> Vec<Value> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn object(path: &str, kind: &str) -> Value {
    manifest(path)
        .into_iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {path}"))
}

/// `serve`'s defaults, as the command line parses them with no flags (and no
/// environment overrides: none of the CI_POD_WEBHOOK_* variables are set in tests).
fn serve_defaults() -> ServeArgs {
    match Cli::try_parse_from(["ci-pod-webhook", "serve"])
        .expect("serve parses")
        .command
    {
        Command::Serve(args) => *args,
        other => panic!("{other:?}"),
    }
}

fn webhook_container() -> Value {
    let deployment = object("base/deployment.yaml", "Deployment");
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "webhook").cloned())
        .expect("a container named webhook")
}

fn env(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
        .map(str::to_string)
}

fn port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

#[test]
fn the_webhook_selects_opted_in_namespaces_by_the_policy_label() {
    let policy = Policy::embedded();
    let own_namespace = object("base/namespace.yaml", "Namespace")["metadata"]["name"].clone();
    let config = object(
        "base/mutatingwebhookconfiguration.yaml",
        "MutatingWebhookConfiguration",
    );
    let hooks = config["webhooks"].as_array().expect("webhooks");
    assert_eq!(
        hooks.len(),
        4,
        "the job-pod entry, the GPU workloads entry, and the resize and ephemeral-containers entries"
    );
    let hook = &hooks[0];
    let expressions = hook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("matchExpressions");
    assert!(
        expressions.contains(
            &json!({"key": policy.keys.opt_in, "operator": "In", "values": [OPT_IN_VALUE, OPT_IN_WARN_VALUE]})
        )
    );
    assert!(expressions.contains(&json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", own_namespace]})));
    assert_eq!(
        hook["rules"],
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}])
    );
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["failurePolicy"], "Ignore");
    assert_eq!(hook["matchPolicy"], "Equivalent");
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert!(
        hook["timeoutSeconds"]
            .as_u64()
            .is_some_and(|t| (1..=5).contains(&t))
    );
    assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
}

#[test]
fn service_and_container_ports_match_what_serve_listens_on() {
    let defaults = serve_defaults();
    let container = webhook_container();
    let https = port(&container, "https");
    let admin = port(&container, "admin");
    assert_eq!(https, u64::from(defaults.listen.port()));
    assert_eq!(admin, u64::from(defaults.admin_listen.port()));
    // The Deployment also sets the addresses explicitly: they must agree.
    assert_eq!(
        env(&container, "CI_POD_WEBHOOK_LISTEN").as_deref(),
        Some(format!("0.0.0.0:{https}").as_str())
    );
    assert_eq!(
        env(&container, "CI_POD_WEBHOOK_ADMIN_LISTEN").as_deref(),
        Some(format!("0.0.0.0:{admin}").as_str())
    );

    let service = object("base/service.yaml", "Service");
    let ports = service["spec"]["ports"].as_array().expect("ports");
    let by_target = |target: &str| {
        ports
            .iter()
            .find(|p| p["targetPort"] == target)
            .cloned()
            .expect(target)
    };
    let webhook_port = by_target("https");
    assert_eq!(webhook_port["port"], 443);
    let config = object(
        "base/mutatingwebhookconfiguration.yaml",
        "MutatingWebhookConfiguration",
    );
    let client = &config["webhooks"][0]["clientConfig"]["service"];
    assert_eq!(client["port"].as_u64().unwrap_or(443), 443);
    assert_eq!(client["name"], service["metadata"]["name"]);
    assert_eq!(client["namespace"], service["metadata"]["namespace"]);
    assert_eq!(
        by_target("admin")["name"],
        "metrics",
        "the ServiceMonitor scrapes the port named metrics"
    );
}

#[tokio::test]
async fn the_probe_paths_exist_on_the_admin_server() {
    let container = webhook_container();
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _client) = crate::support::Running::with(dir.path(), |_| {}).await;
    for (probe, expected) in [("livenessProbe", 200), ("readinessProbe", 200)] {
        let path = container[probe]["httpGet"]["path"]
            .as_str()
            .expect("an httpGet probe");
        assert_eq!(
            container[probe]["httpGet"]["port"], "admin",
            "{probe} goes to the admin port"
        );
        let (status, _) = crate::support::admin_get(server.admin, path)
            .await
            .expect("admin port answers");
        assert_eq!(status.as_u16(), expected, "{probe} {path}");
    }
}

#[test]
fn the_configmap_holds_the_embedded_policy_and_mounts_it_where_serve_reads_it() {
    let copy = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/base/policy.yaml"),
    )
    .expect("read");
    assert_eq!(
        copy, DEFAULT_POLICY_YAML,
        "manifests/base/policy.yaml must equal `ci-pod-webhook default-policy`"
    );
    Policy::parse(&copy, "manifests/base/policy.yaml").expect("the ConfigMap policy is valid");

    let kustomization = object("base/kustomization.yaml", "Kustomization");
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(generator["files"], json!(["policy.yaml"]));

    // The policy and TLS files are read from mounted volumes, never with subPath
    // (a subPath mount never sees ConfigMap or Secret updates, so reload would not work).
    let container = webhook_container();
    let deployment = object("base/deployment.yaml", "Deployment");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .cloned()
        .expect("volumes");
    let mounts = container["volumeMounts"]
        .as_array()
        .cloned()
        .expect("mounts");
    for (variable, source) in [
        ("CI_POD_WEBHOOK_POLICY", "configMap"),
        ("CI_POD_WEBHOOK_TLS_CERT", "secret"),
        ("CI_POD_WEBHOOK_TLS_KEY", "secret"),
    ] {
        let file = env(&container, variable).unwrap_or_else(|| panic!("{variable} is set"));
        let mount = mounts
            .iter()
            .find(|m| {
                m["mountPath"]
                    .as_str()
                    .is_some_and(|p| file.starts_with(&format!("{p}/")))
            })
            .unwrap_or_else(|| panic!("{file} is under a volume mount"));
        assert!(mount.get("subPath").is_none(), "{file}: no subPath");
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mounted volume");
        assert!(volume.get(source).is_some(), "{file} comes from a {source}");
    }
}

#[test]
fn the_node_docker_daemon_serves_the_socket_the_policy_mounts() {
    let policy = Policy::embedded();
    let DockerMode::Socket {
        socket_path,
        host_path,
        ..
    } = &policy.docker.mode
    else {
        panic!("the default policy uses socket mode");
    };
    let daemonset = object("node-docker/daemonset.yaml", "DaemonSet");
    let spec = &daemonset["spec"]["template"]["spec"];
    let args: Vec<String> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["args"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    assert!(
        args.contains(&format!("--host=unix://{socket_path}")),
        "{args:?}"
    );
    let volumes = spec["volumes"].as_array().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["hostPath"]["path"] == host_path.as_str()),
        "the socket directory is on the node"
    );
    // What `doctor` takes for the DaemonSet's socket (any other is a host daemon's).
    assert_eq!(
        host_path.as_str(),
        ci_pod_webhook::doctor::placement::NODE_DOCKER_DIR
    );
    // It runs where job pods run: on CI nodes, GPU nodes included.
    let class = &policy.classes[policy.default_class];
    for (key, value) in &class.node_selector {
        assert_eq!(
            spec["nodeSelector"][key],
            value.as_str(),
            "nodeSelector {key}"
        );
    }
    let tolerations = spec["tolerations"].as_array().expect("tolerations");
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "nvidia.com/gpu" && t["operator"] == "Exists")
    );
}

#[test]
fn the_network_policy_admits_the_webhook_port_only_from_an_ip_block_an_admin_must_fill_in() {
    let component = object("components/network-policy/kustomization.yaml", "Component");
    assert_eq!(component["resources"], json!(["networkpolicy.yaml"]));
    let policy = object(
        "components/network-policy/networkpolicy.yaml",
        "NetworkPolicy",
    );
    let deployment = object("base/deployment.yaml", "Deployment");
    assert_eq!(
        policy["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = policy["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &labels[key], value,
            "the podSelector selects the webhook pods"
        );
    }
    // Ingress only: the webhook must keep reaching the API server to watch namespaces.
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));

    let container = webhook_container();
    let defaults = serve_defaults();
    let rules = policy["spec"]["ingress"].as_array().expect("ingress");
    let rule_for = |port: &str| {
        let matching: Vec<&Value> = rules
            .iter()
            .filter(|r| {
                r["ports"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["port"] == port))
            })
            .collect();
        assert_eq!(matching.len(), 1, "one rule for the {port} port");
        matching[0]
    };
    // The named ports are the ones `serve` listens on.
    assert_eq!(port(&container, "https"), u64::from(defaults.listen.port()));
    assert_eq!(
        port(&container, "admin"),
        u64::from(defaults.admin_listen.port())
    );

    // The webhook port: ipBlocks only, shipped as a placeholder that is no CIDR, so the
    // API server refuses the policy until an admin puts the API server's ranges in.
    let sources = rule_for("https")["from"].as_array().expect("from");
    assert!(!sources.is_empty(), "an empty `from` would admit everyone");
    for source in sources {
        let block = source.as_object().expect("a source");
        assert_eq!(
            block.keys().collect::<Vec<_>>(),
            ["ipBlock"],
            "the API server is not a pod: {source}"
        );
        let cidr = source["ipBlock"]["cidr"].as_str().expect("cidr");
        assert!(
            cidr.starts_with("REPLACE-") && cidr.parse::<std::net::IpAddr>().is_err(),
            "{cidr}"
        );
    }
    // The admin port: Prometheus's namespace.
    let sources = rule_for("admin")["from"].as_array().expect("from");
    assert!(
        !sources.is_empty()
            && sources
                .iter()
                .all(|s| s["namespaceSelector"]["matchLabels"].is_object())
    );
    assert_eq!(rules.len(), 2, "nothing else is admitted");
}

#[test]
fn the_trusted_peers_ship_empty_for_the_admin_to_fill_in_and_doctor_says_so() {
    let container = webhook_container();
    let shipped = env(&container, "CI_POD_WEBHOOK_TRUSTED_PEERS").expect("the variable is there");
    assert_eq!(
        shipped, "",
        "the base cannot know the API server's addresses"
    );
    let args = match Cli::try_parse_from(["ci-pod-webhook", "serve", "--trusted-peers", &shipped])
        .expect("serve takes the shipped value")
        .command
    {
        Command::Serve(args) => *args,
        other => panic!("{other:?}"),
    };
    assert!(args.trusted_peers.is_empty());
    // doctor, reading the Deployment's container as applied, warns until the value is
    // filled in.
    let container: Container = serde_json::from_value(container).expect("a container");
    let deployment = Deployment {
        spec: Some(DeploymentSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
                ..PodTemplateSpec::default()
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let check = network::trusted_peers("ci-pod-webhook/ci-pod-webhook", &deployment);
    assert_eq!(check.status, Status::Warning, "{}", check.message);
    assert!(
        check
            .message
            .contains("CI_POD_WEBHOOK_TRUSTED_PEERS is empty")
    );
    // The comment above the variable shows the patch that fills it in.
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/base/deployment.yaml"),
    )
    .expect("read");
    assert!(text.contains("#                     - name: CI_POD_WEBHOOK_TRUSTED_PEERS"));
}

#[test]
fn the_doctor_cluster_role_reads_exactly_the_objects_the_doctor_fetches() {
    use ci_pod_webhook::doctor::Names;
    let names = Names::default();
    let role = object("doctor/clusterrole.yaml", "ClusterRole");
    let rules = role["rules"].as_array().expect("rules");
    let allows = |group: &str, resource: &str, verb: &str, name: Option<&str>| {
        rules.iter().any(|r| {
            let has = |key: &str, want: &str| {
                r[key]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|v| v == want))
            };
            has("apiGroups", group)
                && has("resources", resource)
                && has("verbs", verb)
                && match name {
                    None => r.get("resourceNames").is_none(),
                    Some(n) => r.get("resourceNames").is_none() || has("resourceNames", n),
                }
        })
    };
    for rule in rules {
        for verb in rule["verbs"].as_array().expect("verbs") {
            // A SubjectAccessReview is a question: nothing is stored.
            let question = rule["resources"] == json!(["subjectaccessreviews"]);
            assert!(
                verb == "get" || verb == "list" || (question && verb == "create"),
                "read-only: {rule}"
            );
        }
    }
    assert!(allows(
        "authorization.k8s.io",
        "subjectaccessreviews",
        "create",
        None
    ));
    assert!(allows("discovery.k8s.io", "endpointslices", "list", None));
    assert!(allows("", "nodes", "list", None));
    assert!(allows("", "namespaces", "list", None));
    assert!(allows("node.k8s.io", "runtimeclasses", "list", None));
    for (group, resource, name) in [
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            &names.webhook_configuration,
        ),
        ("", "configmaps", &names.policy_config_map),
        ("", "secrets", &names.tls_secret),
        ("apps", "deployments", &names.deployment),
        ("apps", "daemonsets", &names.docker_daemon_set),
        ("", "services", &names.service),
        ("", "serviceaccounts", &names.service_account),
    ] {
        assert!(
            allows(group, resource, "get", Some(name)),
            "get {resource}/{name}"
        );
    }
    // The same names as the manifests the doctor checks.
    assert_eq!(
        object("base/deployment.yaml", "Deployment")["metadata"]["name"],
        json!(names.deployment)
    );
    assert_eq!(
        object("node-docker/daemonset.yaml", "DaemonSet")["metadata"]["name"],
        json!(names.docker_daemon_set)
    );
    assert_eq!(
        object(
            "base/mutatingwebhookconfiguration.yaml",
            "MutatingWebhookConfiguration"
        )["metadata"]["name"],
        json!(names.webhook_configuration)
    );
}

#[test]
fn the_webhook_cluster_role_grants_exactly_what_the_server_watches() {
    use ci_pod_webhook::cluster::access;
    let role = object("base/rbac.yaml", "ClusterRole");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    };
    let mut granted: Vec<(String, String, Vec<String>)> = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(rule.get("resourceNames").is_none(), "{rule}");
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                granted.push((group.clone(), resource, strings(&rule["verbs"])));
            }
        }
    }
    let needed: Vec<(String, String, Vec<String>)> = access::ALL
        .iter()
        .map(|a| {
            (
                a.group.to_string(),
                a.resource.to_string(),
                a.verbs.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        granted, needed,
        "manifests/base/rbac.yaml against cluster::access::ALL"
    );
    // The doctor asks about this account, by the Deployment's serviceAccountName.
    assert_eq!(
        object("base/deployment.yaml", "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        json!(ci_pod_webhook::doctor::Names::default().service_account)
    );
}

#[test]
fn the_gpu_workloads_entry_sends_gpu_pods_from_every_non_system_namespace() {
    let policy = Policy::embedded();
    let gpu = policy
        .gpu_workloads
        .as_ref()
        .expect("the default policy places GPU workloads");
    let own_namespace = object("base/namespace.yaml", "Namespace")["metadata"]["name"].clone();
    let config = object(
        "base/mutatingwebhookconfiguration.yaml",
        "MutatingWebhookConfiguration",
    );
    let hook = &config["webhooks"][1];
    assert_eq!(
        hook["clientConfig"]["service"]["path"],
        ci_pod_webhook::server::webhook::GPU_WORKLOADS_PATH
    );
    let mut excluded: Vec<Value> = ci_pod_webhook_core::policy::SYSTEM_NAMESPACES
        .iter()
        .map(|n| json!(n))
        .collect();
    excluded.push(own_namespace);
    assert_eq!(
        hook["namespaceSelector"],
        json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}]}),
        "no opt-in label: namespaces matched by name carry none"
    );
    for key in [
        "rules",
        "failurePolicy",
        "sideEffects",
        "reinvocationPolicy",
        "timeoutSeconds",
        "matchPolicy",
    ] {
        assert_eq!(
            hook[key], config["webhooks"][0][key],
            "{key} as the job-pod entry"
        );
    }
    // The conditions look for every resource the policy names (issue 25, point 8:
    // MIG profiles and AMD GPUs included), the check `doctor` makes of the installed ones.
    let expressions: Vec<&str> = hook["matchConditions"]
        .as_array()
        .expect("matchConditions")
        .iter()
        .filter_map(|c| c["expression"].as_str())
        .collect();
    let missing: Vec<&str> = gpu
        .missing_from_conditions(&expressions)
        .iter()
        .map(|r| r.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "matchConditions do not look for {missing:?}"
    );
    for name in ["nvidia.com/gpu", "nvidia.com/mig-1g.5gb", "amd.com/gpu"] {
        assert!(gpu.asks_for(name), "{name}");
    }
    // The Deployment tells the webhook its namespace, so gpuWorkloads skips it.
    let container = webhook_container();
    let namespace_env = container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "CI_POD_WEBHOOK_NAMESPACE"))
        .expect("CI_POD_WEBHOOK_NAMESPACE");
    assert_eq!(
        namespace_env["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
}

/// Issue 25, points 2 and 3: resizes and ephemeral containers of job pods reach the
/// webhook through entries of their own (after the two that components patch by index),
/// so that their failurePolicy (Fail) and timeout touch nothing else; only UPDATE of the
/// one subresource, in the namespaces the job-pod entry selects.
#[test]
fn resizes_and_ephemeral_containers_have_entries_of_their_own() {
    let config = object(
        "base/mutatingwebhookconfiguration.yaml",
        "MutatingWebhookConfiguration",
    );
    let hooks = config["webhooks"].as_array().expect("webhooks");
    let pods = &hooks[0];
    for (hook, name, resource) in [
        (
            &hooks[2],
            "resize.ci-pod-webhook.ci.skao.int",
            "pods/resize",
        ),
        (
            &hooks[3],
            "ephemeral-containers.ci-pod-webhook.ci.skao.int",
            "pods/ephemeralcontainers",
        ),
    ] {
        assert_eq!(hook["name"], name);
        assert_eq!(
            hook["rules"],
            json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource], "scope": "Namespaced"}]),
            "{name}"
        );
        assert_eq!(hook["failurePolicy"], "Fail", "{name}");
        assert_eq!(
            hook["namespaceSelector"], pods["namespaceSelector"],
            "{name}"
        );
        assert_eq!(hook["clientConfig"], pods["clientConfig"], "{name}");
        for key in ["admissionReviewVersions", "sideEffects", "matchPolicy"] {
            assert_eq!(hook[key], pods[key], "{name} {key}");
        }
        assert!(
            hook["timeoutSeconds"]
                .as_u64()
                .is_some_and(|t| (1..=5).contains(&t)),
            "{name}"
        );
        assert!(hook.get("matchConditions").is_none(), "{name}");
    }
}

/// Every alert of the shipped PrometheusRule has promtool unit tests (tests/alerts/,
/// run by `scripts/test_alerts.py` in `.ci/run`): one where it fires and one where it
/// stays quiet. A new alert without both fails here, before promtool ever runs.
#[test]
fn every_shipped_alert_has_a_promtool_test_that_fires_it_and_one_that_keeps_it_quiet() {
    let rule = object("overlays/monitoring/prometheusrule.yaml", "PrometheusRule");
    let alerts: Vec<&str> = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(alerts.contains(&"CiPodWebhookJobPodsDrift"), "{alerts:?}");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/alerts");
    let mut fired = std::collections::BTreeSet::new();
    let mut quiet = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("tests/alerts") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().ends_with(".test.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let tests: Value = serde_saphyr::from_str(&text).expect("YAML");
        assert_eq!(
            tests["rule_files"],
            json!(["ci-pod-webhook.rules.yaml"]),
            "{}: the rule file scripts/test_alerts.py extracts",
            path.display()
        );
        for case in tests["tests"].as_array().into_iter().flatten() {
            for check in case["alert_rule_test"].as_array().into_iter().flatten() {
                let name = check["alertname"].as_str().expect("alertname").to_string();
                let expected = check["exp_alerts"].as_array().map_or(0, Vec::len);
                if expected > 0 {
                    fired.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    for alert in &alerts {
        assert!(fired.contains(*alert), "no promtool test fires {alert}");
        assert!(
            quiet.contains(*alert),
            "no promtool test keeps {alert} quiet"
        );
    }
    let known: std::collections::BTreeSet<&str> = alerts.iter().copied().collect();
    for tested in fired.iter().chain(&quiet) {
        assert!(
            known.contains(tested.as_str()),
            "tests/alerts tests {tested}, which the PrometheusRule does not have"
        );
    }
}
