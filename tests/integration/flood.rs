//! A connection flood from one address does not keep the API server out (issue 11).
//!
//! Before per-address bounds, 1,030 TLS connections that each sent one review and went
//! idle, or 1,100 bare TCP connections that never started TLS (reopened as they were
//! dropped), held all 1,024 connection slots: a real review then waited in the kernel's
//! backlog past the API server's 3 s timeout, and with `failurePolicy: Ignore` every pod
//! was admitted without its class. Here the flood comes from 127.0.0.2 (a client socket
//! bound to it before connecting; Linux routes all of 127.0.0.0/8 to lo) and a review
//! from 127.0.0.1, the API server's stand-in, must still be answered while the flood
//! holds its connections, with the flood's excess connections refused.
//!
//! The server runs with the default connection bounds. In the bare-TCP test the
//! first-byte and handshake timeouts are raised to a minute, so that nothing but the
//! per-address bound can let the review in while the flood lasts (before the fix the
//! flood held every slot for the whole test).
//!
//! Within one connection, HTTP/2 lets a client open many requests at once: the server
//! allows 32 (hyper's default is 200), so one address's connections carry at most
//! 32 × `--max-connections-per-address` requests.
//!
//! Needs about 1,500 file descriptors (client and server ends in one process); the test
//! says so when `ulimit -n` is lower.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use ci_pod_webhook::server::Limits;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt as _;
use tokio::sync::Semaphore;

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// One flood at a time (trusted_peers.rs's too): each needs a thousand descriptors and
/// both cores.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A review from 127.0.0.1, as the API server would send one.
async fn review_from_the_api_server(server: &Running, client: &Client) {
    let answered = tokio::time::timeout(PATIENCE, async {
        let mut conn = client
            .connect(server.webhook, Protocol::Http1)
            .await
            .expect("connect");
        conn.review(&job_pod_review("api-server", "gitlab", |_| {}))
            .await
    })
    .await;
    let reply = answered.unwrap_or_else(|_| {
        panic!("the review from 127.0.0.1 was not answered within {PATIENCE:?} of the flood")
    });
    assert_eq!(reply.json()["response"]["allowed"], true);
}

/// One flood connection: TLS from 127.0.0.2, one review, then kept open and idle.
async fn idle_after_one_review(client: Client, addr: SocketAddr) -> Result<Held, String> {
    let tcp = connect_from(FLOODER, addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = client.tls_on(tcp, Protocol::Http1).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    let open = tokio::spawn(async move { drop(conn.await) });
    let body = serde_json::to_vec(&job_pod_review("flood", "gitlab", |_| {})).expect("json");
    let response = sender
        .send_request(post("application/json", full(body)))
        .await
        .map_err(|e| e.to_string())?;
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Held { sender, open })
}

/// A flood connection held open, idle.
struct Held {
    sender: hyper::client::conn::http1::SendRequest<ReqBody>,
    open: tokio::task::JoinHandle<()>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_from_one_address_do_not_keep_the_api_server_out() {
    let _serial = SERIAL.lock().await;
    let flood = 1_030;
    need_descriptors(2 * flood as u64 + 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    let limits = Limits::default();

    // 32 connecting at a time, as a client with a connection pool would.
    let connecting = Arc::new(Semaphore::new(32));
    let tasks: Vec<_> = (0..flood)
        .map(|_| {
            let (client, addr, connecting) = (client.clone(), server.webhook, connecting.clone());
            tokio::spawn(async move {
                let _turn = connecting.acquire_owned().await.expect("semaphore");
                tokio::time::timeout(PATIENCE, idle_after_one_review(client, addr))
                    .await
                    .unwrap_or_else(|_| Err("no answer".to_string()))
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut turned_away = 0;
    for task in tasks {
        match task.await.expect("flood task") {
            Ok(conn) => held.push(conn),
            Err(_) => turned_away += 1,
        }
    }
    let open = server.metric("ci_pod_webhook_open_connections").await;
    eprintln!(
        "flood from {FLOODER}: {} connections answered and held idle, {turned_away} turned away; \
         {open} open on the server",
        held.len()
    );

    // While the flood holds its connections, the API server is answered.
    review_from_the_api_server(&server, &client).await;
    assert!(
        held.iter()
            .all(|c| !c.open.is_finished() && !c.sender.is_closed()),
        "the flood's connections are still held"
    );
    assert_eq!(held.len(), limits.max_connections_per_address);
    let refused = server.metrics().await;
    let by_connections = metric(
        &refused,
        r#"ci_pod_webhook_connections_refused_total{reason="address_connections"}"#,
    );
    let by_handshakes = metric(
        &refused,
        r#"ci_pod_webhook_connections_refused_total{reason="address_handshakes"}"#,
    );
    assert_eq!(
        by_connections + by_handshakes,
        turned_away as f64,
        "every connection past the bound was refused, none waited"
    );
    assert_eq!(
        by_connections, turned_away as f64,
        "32 at a time never hit the handshake bound"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_tcp_connections_from_one_address_do_not_keep_the_api_server_out() {
    let _serial = SERIAL.lock().await;
    let flood = 1_100;
    need_descriptors(flood as u64 + 400);
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |s| {
        s.limits.first_byte_timeout = Duration::from_secs(60);
        s.limits.handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let limits = Limits::default();

    // Each connection sends nothing and is reopened (after a breath, so that the test
    // is not only a race for the CPU) whenever the server closes it.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..flood)
        .map(|_| {
            let (addr, stop, opened) = (server.webhook, stop.clone(), opened.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut tcp) = connect_from(FLOODER, addr).await {
                        opened.fetch_add(1, Ordering::Relaxed);
                        let mut buf = [0u8; 1];
                        tokio::select! {
                            _ = tcp.read(&mut buf) => {}
                            () = async { while !stop.load(Ordering::Relaxed) {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            } } => {}
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    eventually("every flood connection has been opened once", || async {
        opened.load(Ordering::Relaxed) >= flood
    })
    .await;
    // Never more than its address's handshake slots (the gauge counts in each
    // connection's task, so it may trail the accepts briefly).
    eventually("the flood holds its address's handshake slots", || async {
        let held = server.metric("ci_pod_webhook_open_connections").await;
        assert!(
            held <= limits.max_handshakes_per_address as f64,
            "{held} held"
        );
        held == limits.max_handshakes_per_address as f64
    })
    .await;
    eprintln!(
        "flood from {FLOODER}: {} connects so far",
        opened.load(Ordering::Relaxed)
    );

    // While the flood goes on, the API server is answered.
    review_from_the_api_server(&server, &client).await;
    let after = server.metrics().await;
    let refused = metric(
        &after,
        r#"ci_pod_webhook_connections_refused_total{reason="address_handshakes"}"#,
    );
    eprintln!(
        "{} connects in all, {refused} refused",
        opened.load(Ordering::Relaxed)
    );
    assert!(
        refused >= (flood - limits.max_handshakes_per_address) as f64,
        "{refused} refused"
    );
    assert!(
        metric(&after, "ci_pod_webhook_open_connections")
            >= limits.max_handshakes_per_address as f64,
        "the flood was still holding its connections"
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("flood task");
    }
}

#[tokio::test]
async fn an_http2_connection_may_carry_32_requests_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    let tls = client
        .tls(server.webhook, Protocol::Http2)
        .await
        .expect("TLS");
    let (h2, connection) = h2::client::handshake(tls).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.expect("ready");
    // One exchange, so that the server's SETTINGS have been read.
    let request = hyper::Request::post("https://localhost/mutate")
        .header("content-type", "application/json")
        .body(())
        .expect("request");
    let (answer, _body) = h2.send_request(request, true).expect("send");
    answer.await.expect("an answer");
    assert_eq!(h2.current_max_send_streams(), 32);
}
