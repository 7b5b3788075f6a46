//! How long a GitLab Runner job pod takes on a real node from its create (what
//! `kubectl create` sends) to its `build` container running, with and without
//! ci-pod-webhook.
//!
//! `KUBEBUILDER_ASSETS=DIR cargo bench --bench node_pod_start` (as root, with the node's
//! packages: docs/e2e.md, "A real node"; BENCHMARKS.md) starts the e2e harness's node
//! (containerd, runc, the CNI bridge, the kubelet), the host `docker-for-gitlab` daemon
//! and ci-pod-webhook with examples/policies/ska-dp.yaml, and creates the 17.9 job pod
//! (init-permissions, build, helper, svc-0; local images) `BENCH_PODS` times (default
//! 20) in each of two namespaces, alternating, one pod at a time:
//!
//! - `none`: not opted in, so no webhook is called; the pod runs as the runner sent it
//!   (BestEffort: no resources);
//! - `ours`: opted in; the webhook gives it the class (Burstable, 3 CPUs / 1Gi limits
//!   in every container), the host daemon's socket file and the limitsEnv variables.
//!
//! Each time is measured on this process's clock, from just before the POST to the
//! watch event that shows `build` running (the init container has run by then); the
//! create call's own time (admission included) is shown apart. Each pod is deleted, and
//! gone, before the next one is created.

// The e2e tests' harness; the bench uses its node.
#[allow(dead_code, unused_imports)]
#[path = "../../tests/support/e2e/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use kube::runtime::watcher;
use serde_json::Value;
use support::*;
use tokio::sync::mpsc;

const FIXTURE: &str = "gitlab-runner-17.9-job-pod.json";
const WARM_UP: usize = 3;

fn main() {
    let pods: usize = std::env::var("BENCH_PODS")
        .ok()
        .map(|n| n.parse().expect("BENCH_PODS is a number of pods"))
        .unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(pods));
}

/// The first time each pod of a namespace was seen with `build` running.
fn watch_running(api: Api<Pod>) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let (send, receive) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let running = pod
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default()
                .iter()
                .any(|c| {
                    c.name == "build" && c.state.as_ref().is_some_and(|s| s.running.is_some())
                });
            if running && seen.insert(name.clone(), ()).is_none() {
                let _ = send.send((name, Instant::now()));
            }
        }
    });
    receive
}

/// One way of creating the pods, and what was measured.
struct Way<'a> {
    name: &'static str,
    ns: TestNamespace<'a>,
    running: mpsc::UnboundedReceiver<(String, Instant)>,
    to_running: Vec<Duration>,
    create_call: Vec<Duration>,
}

impl Way<'_> {
    /// Creates pod `name`, waits until its build runs, deletes it and waits until it is
    /// gone. Records the times when `record`.
    async fn one(&mut self, name: &str, record: bool) {
        let wait = "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done";
        let pod: Value = runnable(
            FIXTURE,
            name,
            &[("build", wait), ("helper", wait), ("svc-0", wait)],
        );
        let start = Instant::now();
        self.ns
            .create_pod(&pod)
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        let created = start.elapsed();
        let running = loop {
            let (seen, at) = tokio::time::timeout(POD_PATIENCE, self.running.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: build not running after {POD_PATIENCE:?}"))
                .expect("the watch");
            if seen == name {
                break at - start;
            }
        };
        if record {
            self.create_call.push(created);
            self.to_running.push(running);
        }
        let api = Api::<Pod>::namespaced(self.ns.cp.client().await, &self.ns.name);
        api.delete(name, &DeleteParams::default().grace_period(1))
            .await
            .expect("delete");
        let gone = Instant::now();
        while api.get_opt(name).await.expect("get").is_some() {
            assert!(gone.elapsed() < POD_PATIENCE, "{name} not gone");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn run(pods: usize) {
    let node = Node::take_turn().await;
    node.host_docker().await;
    let policy = repo_file("examples/policies/ska-dp.yaml");
    let policy = std::fs::read_to_string(policy).expect("read ska-dp.yaml");
    node.webhook("ska", &policy).await;
    let client = node.cp.client().await;
    let mut ways = Vec::new();
    for (name, ns) in [
        ("none", node.cp.namespace("bench-none", &[]).await),
        ("ours", node.namespace("bench-ours", "ska", &[]).await),
    ] {
        let running = watch_running(Api::namespaced(client.clone(), &ns.name));
        ways.push(Way {
            name,
            ns,
            running,
            to_running: Vec::new(),
            create_call: Vec::new(),
        });
    }
    println!(
        "node_pod_start: {pods} pods per way ({WARM_UP} warm-up), one at a time, on node {} ({} CPUs)",
        node.name, node.allocatable_cpus
    );
    for i in 0..WARM_UP + pods {
        for way in &mut ways {
            way.one(&format!("job-{i}"), i >= WARM_UP).await;
        }
    }
    println!(
        "\n| way | pods | create call p50 ms | create → build running: p50 ms | p90 ms | min ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for way in &mut ways {
        way.to_running.sort_unstable();
        way.create_call.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |v: &[Duration], p: f64| ms(v[((v.len() - 1) as f64 * p).round() as usize]);
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            way.name,
            way.to_running.len(),
            at(&way.create_call, 0.5),
            at(&way.to_running, 0.5),
            at(&way.to_running, 0.9),
            ms(way.to_running[0]),
            ms(*way.to_running.last().expect("a pod"))
        );
    }
}
