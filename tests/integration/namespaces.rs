//! The namespace label mirror against a fake API server on loopback, through kube's
//! real client: what a review sees while the watch lists, updates, breaks and recovers,
//! and when a namespace is missing from the mirror.

mod fake_api;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ci_pod_webhook::cluster::{Cluster, DIRECT_GET_TIMEOUT, NamespaceLabels};
use fake_api::{FakeApi, GetMode, param};

const OPT_IN: (&str, &str) = ("ci.skao.int/pod-policy", "enabled");
const GPU_CLASS: (&str, &str) = ("ci.skao.int/runner-class", "k8srunner-gpu-v100");

/// Long enough for a loaded 2-core machine and a watcher backing off twice; tests
/// poll, so they finish as soon as the condition holds.
const PATIENCE: Duration = Duration::from_secs(30);

fn known(labels: &[(&str, &str)]) -> NamespaceLabels {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    NamespaceLabels::Known(Arc::new(labels))
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    crate::support::eventually_within(what, PATIENCE, check).await;
}

/// Logs go to the test's captured output, shown when a test fails.
fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ci_pod_webhook=debug,kube_runtime=debug")
        .with_test_writer()
        .try_init();
}

async fn synced(fake: &FakeApi) -> Cluster {
    capture_logs();
    let source = Cluster::from_client(fake.client());
    tokio::time::timeout(PATIENCE, source.wait_ready())
        .await
        .expect("initial sync");
    assert!(source.is_ready());
    source
}

#[tokio::test]
async fn readiness_waits_for_the_initial_list() {
    capture_logs();
    let fake = FakeApi::start(&[("ci-a", &[OPT_IN])]).await;
    fake.open_lists(false);
    let source = Cluster::from_client(fake.client());

    eventually("the watcher asks for the list", || async {
        !fake.lists().is_empty()
    })
    .await;
    assert!(!source.is_ready(), "not ready while the list is unanswered");

    fake.open_lists(true);
    tokio::time::timeout(PATIENCE, source.wait_ready())
        .await
        .expect("ready after the list");
    assert!(source.is_ready());
    assert_eq!(source.labels("ci-a").await, known(&[OPT_IN]));
    assert_eq!(fake.gets("ci-a"), 0, "answered from memory");
}

#[tokio::test]
async fn only_metadata_is_asked_for() {
    let fake = FakeApi::start(&[("ci-a", &[OPT_IN])]).await;
    let source = synced(&fake).await;
    eventually("the watch starts", || async { !fake.watches().is_empty() }).await;
    source.labels("missing").await;

    let requests = fake.requests();
    let accept = |path: &str, list: bool| {
        let request = requests
            .iter()
            .find(|r| r.path == path && (r.query.contains("watch") != list));
        request.map(|r| r.accept.clone()).unwrap_or_default()
    };
    assert!(accept("/api/v1/namespaces", true).contains("as=PartialObjectMetadataList"));
    assert!(accept("/api/v1/namespaces", false).contains("as=PartialObjectMetadata;"));
    assert!(accept("/api/v1/namespaces/missing", true).contains("as=PartialObjectMetadata;"));
}

// Labels added and changed on a live namespace reaching a running webhook: the real
// API server proves it in tests/e2e/namespaces.rs. A deletion cannot be shown there (no
// namespace controller finalises it, and pods cannot be created in a deleted namespace),
// so this fake proves that a DELETED event empties the entry.
#[tokio::test]
async fn a_deleted_namespace_leaves_the_mirror() {
    let fake = FakeApi::start(&[("ci-old", &[OPT_IN, GPU_CLASS])]).await;
    let source = synced(&fake).await;
    // A failing direct GET answers TrustSelector, so `Known` can only come from the watch.
    fake.set_get_mode(GetMode::Fail);
    assert_eq!(source.labels("ci-old").await, known(&[OPT_IN, GPU_CLASS]));

    let gets_before = fake.gets("ci-old");
    fake.delete("ci-old");
    eventually("DELETED removes them", || async {
        source.labels("ci-old").await == NamespaceLabels::TrustSelector
    })
    .await;
    assert!(
        fake.gets("ci-old") > gets_before,
        "a deleted namespace is a cache miss"
    );
}

#[tokio::test]
async fn a_namespace_missing_from_the_cache_is_fetched_once() {
    let fake = FakeApi::start(&[]).await;
    let source = synced(&fake).await;

    fake.put_silently("just-created", &[OPT_IN, GPU_CLASS]);
    assert_eq!(
        source.labels("just-created").await,
        known(&[OPT_IN, GPU_CLASS])
    );
    assert_eq!(fake.gets("just-created"), 1);

    assert_eq!(
        source.labels("nowhere").await,
        known(&[]),
        "404: no labels, not opted in"
    );
    assert_eq!(fake.gets("nowhere"), 1);

    let before = fake.requests().len();
    assert_eq!(
        source.labels("").await,
        known(&[]),
        "no namespace, no opt-in"
    );
    assert_eq!(fake.requests().len(), before, "nothing to ask about");
}

#[tokio::test]
async fn a_failing_direct_get_trusts_the_selector() {
    let fake = FakeApi::start(&[]).await;
    let source = synced(&fake).await;
    fake.set_get_mode(GetMode::Fail);
    fake.put_silently("just-created", &[OPT_IN]);

    assert_eq!(
        source.labels("just-created").await,
        NamespaceLabels::TrustSelector
    );
    assert_eq!(
        fake.gets("just-created"),
        1,
        "one GET, no retries on the request path"
    );
}

#[tokio::test]
async fn a_direct_get_without_an_answer_gives_up_within_the_timeout() {
    let fake = FakeApi::start(&[]).await;
    let source = synced(&fake).await;
    fake.set_get_mode(GetMode::Hang);

    let started = Instant::now();
    assert_eq!(source.labels("slow").await, NamespaceLabels::TrustSelector);
    let waited = started.elapsed();
    assert!(
        waited >= DIRECT_GET_TIMEOUT,
        "gave up early, after {waited:?}"
    );
    assert!(
        waited < DIRECT_GET_TIMEOUT + Duration::from_secs(5),
        "waited {waited:?}"
    );
    assert_eq!(fake.gets("slow"), 1);
}

#[tokio::test]
async fn an_ended_watch_resumes_from_the_last_resource_version() {
    let fake = FakeApi::start(&[("ci-a", &[OPT_IN])]).await;
    let source = synced(&fake).await;
    fake.apply("ci-a", &[OPT_IN, GPU_CLASS]);
    eventually("the change arrives", || async {
        source.labels("ci-a").await == known(&[OPT_IN, GPU_CLASS])
    })
    .await;
    let last_seen = fake.resource_version().to_string();

    fake.end_watches();
    eventually("the watcher watches again", || async {
        fake.watches().len() >= 2
    })
    .await;
    let resumed = fake.watches().pop().expect("second watch");
    assert_eq!(param(&resumed.query, "resourceVersion"), last_seen);
    assert_eq!(fake.lists().len(), 1, "resumed without relisting");

    fake.apply("ci-a", &[OPT_IN]);
    eventually("events flow on the new watch", || async {
        source.labels("ci-a").await == known(&[OPT_IN])
    })
    .await;
}

#[tokio::test]
async fn an_expired_watch_relists_and_serves_the_old_labels_meanwhile() {
    let fake = FakeApi::start(&[("stale", &[OPT_IN]), ("kept", &[OPT_IN])]).await;
    let source = synced(&fake).await;
    eventually("the watch starts", || async { fake.open_watches() == 1 }).await;
    fake.set_get_mode(GetMode::Fail);
    // The namespace's DELETED event is lost; only a relist can tell.
    fake.delete_silently("stale");

    fake.open_lists(false);
    fake.watch_error(410);
    eventually("the watcher drops the expired watch", || async {
        fake.open_watches() == 0
    })
    .await;
    eventually("the watcher relists", || async { fake.lists().len() == 2 }).await;
    // The relist is held back: the mirror keeps answering with what it had.
    assert_eq!(source.labels("stale").await, known(&[OPT_IN]));
    assert!(
        source.is_ready(),
        "a relist does not make the webhook unready"
    );

    fake.open_lists(true);
    eventually("the relist drops the lost namespace", || async {
        source.labels("stale").await == NamespaceLabels::TrustSelector
    })
    .await;
    assert_eq!(source.labels("kept").await, known(&[OPT_IN]));
}

#[tokio::test]
async fn an_unreachable_api_server_leaves_the_cache_answering_until_the_watch_reconnects() {
    let fake = FakeApi::start(&[("ci-a", &[OPT_IN])]).await;
    let source = synced(&fake).await;
    eventually("the watch starts", || async { fake.open_watches() == 1 }).await;

    fake.go_down();
    eventually("the watcher tries to reconnect", || async {
        fake.refused() >= 1
    })
    .await;
    assert_eq!(
        source.labels("ci-a").await,
        known(&[OPT_IN]),
        "served from memory"
    );
    assert!(source.is_ready());
    assert_eq!(
        source.labels("unknown").await,
        NamespaceLabels::TrustSelector,
        "a miss cannot be checked, so the selector is trusted"
    );

    // Changed while the webhook could not see it; the resumed watch replays it.
    fake.apply("ci-a", &[OPT_IN, GPU_CLASS]);
    fake.come_back();
    eventually("the watch reconnects and catches up", || async {
        source.labels("ci-a").await == known(&[OPT_IN, GPU_CLASS])
    })
    .await;
    assert_eq!(fake.lists().len(), 1, "resumed from its resourceVersion");
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_watch() {
    let fake = FakeApi::start(&[]).await;
    let source = synced(&fake).await;
    eventually("the watch starts", || async { fake.open_watches() == 1 }).await;

    let clone = source.clone();
    drop(source);
    assert!(clone.is_ready(), "a clone keeps the watch alive");
    drop(clone);
    eventually("the watch connection closes", || async {
        fake.open_watches() == 0
    })
    .await;
}

#[tokio::test]
async fn off_trusts_the_selector_for_every_namespace() {
    let source = Cluster::default();
    assert!(source.is_ready());
    assert_eq!(
        source.labels("anything").await,
        NamespaceLabels::TrustSelector
    );
}
