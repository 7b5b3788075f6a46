//! What tests create on the control plane: namespaces (one per test), pods sent as raw
//! JSON, Nodes the scheduler can use, and the cluster-wide objects every test assumes.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{ControlPlane, PATIENCE};

/// A GitLab Runner job pod from `tests/fixtures/`, cleaned of what the server sets
/// (status, creationTimestamp, namespace): what the runner sends.
pub fn job_pod(fixture: &str) -> Value {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut pod: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let pod_object = pod.as_object_mut().expect("a pod object");
    pod_object.remove("status");
    let metadata = pod["metadata"].as_object_mut().expect("metadata");
    for server_field in [
        "creationTimestamp",
        "namespace",
        "uid",
        "resourceVersion",
        "managedFields",
    ] {
        metadata.remove(server_field);
    }
    pod
}

/// The same pod under another name.
pub fn renamed(pod: &Value, name: &str) -> Value {
    let mut pod = pod.clone();
    pod["metadata"]["name"] = json!(name);
    pod
}

/// A namespace that belongs to one test. When the test panics, the control plane's logs
/// are kept and their place printed.
pub struct TestNamespace<'a> {
    pub name: String,
    pub cp: &'a ControlPlane,
}

impl Drop for TestNamespace<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kube-e2e: test namespace {}", self.name);
            self.cp.keep_logs();
        }
    }
}

impl ControlPlane {
    /// Objects every test may rely on: the `nvidia` RuntimeClass the GPU classes name.
    pub(super) async fn install_cluster_basics(&self) {
        let client = self.client().await;
        let runtime_class: RuntimeClass =
            serde_json::from_value(json!({"metadata": {"name": "nvidia"}, "handler": "nvidia"}))
                .expect("RuntimeClass");
        Api::<RuntimeClass>::all(client)
            .create(&PostParams::default(), &runtime_class)
            .await
            .expect("create RuntimeClass nvidia");
    }

    /// Creates namespace `name` with `labels`, and its `default` ServiceAccount (no
    /// controller-manager runs to make it, and pods name it).
    pub async fn namespace(&self, name: &str, labels: &[(&str, &str)]) -> TestNamespace<'_> {
        let client = self.client().await;
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                .expect("Namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let account: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "default"}})).expect("SA");
        match Api::<ServiceAccount>::namespaced(client, name)
            .create(&PostParams::default(), &account)
            .await
        {
            // With a controller-manager (a control plane with a real node), its
            // ServiceAccount controller may have made it first.
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("create ServiceAccount default in {name}: {e}"),
        }
        TestNamespace {
            name: name.to_string(),
            cp: self,
        }
    }

    /// Creates a Node the scheduler can use: `labels`, `taints`, room for 110 pods, 64
    /// CPUs, 512Gi and `gpus` GPUs, Ready, without the not-ready taint the API server
    /// puts on every new Node (no node lifecycle controller runs to lift it).
    pub async fn create_node(&self, name: &str, labels: Value, taints: Value, gpus: u32) {
        let nodes = Api::<Node>::all(self.client().await);
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .expect("Node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .unwrap_or_else(|e| panic!("create node {name}: {e}"));
        let capacity = json!({
            "cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": gpus.to_string(),
        });
        let status = json!({"status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "e2e node", "lastHeartbeatTime": now(), "lastTransitionTime": now(),
            }],
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("set status of node {name}: {e}"));
        let stored = nodes.get(name).await.expect("get node");
        let kept: Vec<_> = stored
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.key != "node.kubernetes.io/not-ready")
            .collect();
        nodes
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"taints": kept}})),
            )
            .await
            .unwrap_or_else(|e| panic!("remove the not-ready taint of node {name}: {e}"));
    }
}

fn now() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid");
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

impl TestNamespace<'_> {
    /// POSTs `pod` as sent (raw JSON, nothing dropped by a typed model) and returns the
    /// pod as the API server stored it.
    pub async fn create_pod(&self, pod: &Value) -> Result<Value, kube::Error> {
        self.post_pod(pod, false).await
    }

    /// As [`Self::create_pod`] with `dryRun=All`: admission runs (webhooks included:
    /// ours declares `sideEffects: None`), nothing is stored.
    pub async fn dry_run_pod(&self, pod: &Value) -> Result<Value, kube::Error> {
        self.post_pod(pod, true).await
    }

    async fn post_pod(&self, pod: &Value, dry_run: bool) -> Result<Value, kube::Error> {
        let query = if dry_run { "?dryRun=All" } else { "" };
        let request = hyper::Request::post(format!("/api/v1/namespaces/{}/pods{query}", self.name))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(pod).expect("pod to JSON"))
            .expect("request");
        self.cp.client().await.request::<Value>(request).await
    }

    /// The stored pod `name`.
    pub async fn get_pod(&self, name: &str) -> Value {
        let request = hyper::Request::get(format!("/api/v1/namespaces/{}/pods/{name}", self.name))
            .body(Vec::new())
            .expect("request");
        self.cp
            .client()
            .await
            .request::<Value>(request)
            .await
            .unwrap_or_else(|e| panic!("get pod {}/{name}: {e}", self.name))
    }

    /// Sets (`Some`) or removes (`None`) labels of the namespace.
    pub async fn label(&self, labels: &[(&str, Option<&str>)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        Api::<Namespace>::all(self.cp.client().await)
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": labels}})),
            )
            .await
            .unwrap_or_else(|e| panic!("label namespace {}: {e}", self.name));
    }

    /// Waits until pod `name` is bound to a node, and returns the node's name.
    pub async fn wait_for_binding(&self, name: &str) -> String {
        let start = Instant::now();
        loop {
            let pod = self.get_pod(name).await;
            if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                return node.to_string();
            }
            assert!(
                start.elapsed() < PATIENCE,
                "pod {}/{name} not bound after {PATIENCE:?}; its conditions: {}",
                self.name,
                pod.pointer("/status/conditions").unwrap_or(&Value::Null)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The annotations of a stored object (empty if none).
pub fn annotations(object: &Value) -> serde_json::Map<String, Value> {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The container `name` of a pod spec (containers or initContainers).
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in the pod"))
}

impl TestNamespace<'_> {
    /// Deletes pod `name` at once (no kubelet runs to end it gracefully).
    pub async fn delete_pod(&self, name: &str) {
        let pods =
            Api::<k8s_openapi::api::core::v1::Pod>::namespaced(self.cp.client().await, &self.name);
        pods.delete(name, &kube::api::DeleteParams::default().grace_period(0))
            .await
            .unwrap_or_else(|e| panic!("delete pod {}/{name}: {e}", self.name));
    }

    /// Deletes the namespace as a cluster does: the namespace is marked for deletion,
    /// its pods are deleted, and the namespace goes. No controller-manager runs here, so
    /// this plays the namespace controller's part: it deletes the pods and finalizes it.
    pub async fn delete(&self) {
        let client = self.cp.client().await;
        let namespaces = Api::<Namespace>::all(client.clone());
        namespaces
            .delete(&self.name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("delete namespace {}: {e}", self.name));
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &self.name);
        pods.delete_collection(
            &kube::api::DeleteParams::default().grace_period(0),
            &Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("delete the pods of {}: {e}", self.name));
        let mut namespace = namespaces.get(&self.name).await.expect("the namespace");
        if let Some(spec) = namespace.spec.as_mut() {
            spec.finalizers = Some(Vec::new());
        }
        let request = hyper::Request::put(format!("/api/v1/namespaces/{}/finalize", self.name))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&namespace).expect("JSON"))
            .expect("request");
        client
            .request::<Value>(request)
            .await
            .unwrap_or_else(|e| panic!("finalize namespace {}: {e}", self.name));
        let start = Instant::now();
        while namespaces.get_opt(&self.name).await.expect("get").is_some() {
            assert!(
                start.elapsed() < PATIENCE,
                "namespace {} not gone",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
