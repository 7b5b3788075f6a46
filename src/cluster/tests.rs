use super::*;
use std::time::Duration;

#[tokio::test]
async fn without_a_cluster_every_namespace_trusts_the_selector() {
    let cluster = Cluster::connect(KubeMode::Off, Place::InPod)
        .await
        .expect("off never fails");
    assert!(cluster.client().is_none());
    assert!(cluster.is_ready());
    cluster.wait_ready().await;
    assert_eq!(cluster.labels("ci").await, NamespaceLabels::TrustSelector);
    assert_eq!(cluster.labels("").await, NamespaceLabels::TrustSelector);
}

#[tokio::test]
async fn a_fixed_view_knows_only_its_namespaces() {
    let cluster = Cluster::fixed([("ci", &[("team", "a")][..])]);
    let team = BTreeMap::from([("team".to_string(), "a".to_string())]);
    assert_eq!(
        cluster.labels("ci").await,
        NamespaceLabels::Known(Arc::new(team))
    );
    assert_eq!(
        cluster.labels("other").await,
        NamespaceLabels::Known(Arc::default())
    );
}

#[tokio::test]
async fn stopping_the_cluster_stops_its_watches() {
    // A port nobody listens on: the watcher keeps failing and backing off.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", closed.local_addr().expect("local addr"));
    drop(closed);
    let config = kube::Config::new(url.parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");

    let cluster = Cluster::from_client(client);
    assert!(!cluster.is_ready());
    cluster.stop();
    // `wait_ready` resolves without a sync only once the task has dropped its end.
    tokio::time::timeout(Duration::from_secs(10), cluster.wait_ready())
        .await
        .expect("the watcher task ends on stop");
    assert!(!cluster.is_ready());
}

#[tokio::test]
async fn outside_a_pod_no_cluster_config_means_trusting_the_selector() {
    let cluster = Cluster::without_config(Place::Outside, "no kubeconfig");
    assert_eq!(cluster.readiness(), Readiness::Ready);
    assert_eq!(cluster.labels("ci").await, NamespaceLabels::TrustSelector);
}

#[tokio::test]
async fn in_a_pod_no_cluster_config_is_not_ready_and_says_how_to_fix_it() {
    let cluster = Cluster::without_config(
        Place::InPod,
        "failed to read the token file /var/run/secrets/kubernetes.io/serviceaccount/token",
    );
    let Readiness::NotReady(why) = cluster.readiness() else {
        panic!("ready without cluster access in a pod");
    };
    assert!(
        why.starts_with("no cluster access in a pod (KUBERNETES_SERVICE_HOST is set): failed to read the token file"),
        "{why}"
    );
    assert!(why.contains("automountServiceAccountToken: true"), "{why}");
    assert!(why.contains("--kube off"), "{why}");
    assert!(!cluster.is_ready());
}

#[tokio::test]
async fn a_watch_not_listed_yet_is_named_in_the_readiness() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", closed.local_addr().expect("local addr"));
    drop(closed);
    let client =
        kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client");
    let cluster = Cluster::from_client(client);
    assert_eq!(
        cluster.readiness(),
        Readiness::NotReady("namespace watch: first list not stored yet".into())
    );
    cluster.stop();
}
