//! A steady stream of reviews from several concurrent clients, for tests that change
//! things under load (certificate and policy reloads, slow clients). Each client keeps a
//! keep-alive connection (HTTP/1.1 and HTTP/2 alternately), may open a fresh one every
//! few reviews, checks every answer, and records failures rather than panicking, so
//! the test can assert that there were none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::{Client, Conn, Protocol};

/// Makes the review with the given uid.
pub type MakeReview = Arc<dyn Fn(&str) -> Value + Send + Sync>;
/// Checks an answer (the parsed AdmissionReview response) to a review.
pub type Check = Arc<dyn Fn(&Value, &Value) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
pub struct LoadOptions {
    pub clients: usize,
    /// Open a fresh connection every this many reviews (`None`: keep one).
    pub fresh_every: Option<usize>,
    /// Pause between two reviews of one client.
    pub pause: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            clients: 4,
            fresh_every: None,
            pause: Duration::from_millis(2),
        }
    }
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub answered: usize,
    pub failures: Vec<String>,
    /// The certificate served to each connection this client opened, in order.
    pub certificates: Vec<CertificateDer<'static>>,
    /// When each review was sent, and how long its answer took.
    pub latencies: Vec<(Instant, Duration)>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<ClientStats>>,
}

impl Load {
    pub fn start(
        client: &Client,
        addr: SocketAddr,
        options: LoadOptions,
        review: MakeReview,
        check: Check,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let tasks = (0..options.clients)
            .map(|index| {
                let protocol = if index % 2 == 0 {
                    Protocol::Http1
                } else {
                    Protocol::Http2
                };
                tokio::spawn(run_client(
                    client.clone(),
                    addr,
                    protocol,
                    index,
                    options.clone(),
                    review.clone(),
                    check.clone(),
                    stop.clone(),
                    answered.clone(),
                ))
            })
            .collect();
        Load {
            stop,
            answered,
            tasks,
        }
    }

    /// Reviews answered so far, by all clients.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits until the clients have had `n` more reviews answered (at most three times
    /// [`super::PATIENCE`]: a debug build on a busy machine can be slow): the load
    /// really ran across whatever the test just changed.
    pub async fn wait_for(&self, n: usize) {
        let target = self.answered() + n;
        super::eventually_within("the load makes progress", super::PATIENCE * 3, || async {
            self.answered() >= target
        })
        .await;
    }

    /// Stops every client after its current review and returns what each saw.
    pub async fn stop(self) -> Vec<ClientStats> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.push(task.await.expect("a load client panicked"));
        }
        all
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_client(
    client: Client,
    addr: SocketAddr,
    protocol: Protocol,
    index: usize,
    options: LoadOptions,
    review: MakeReview,
    check: Check,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut conn: Option<Conn> = None;
    let mut seq = 0usize;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let fresh = options.fresh_every.is_some_and(|n| seq.is_multiple_of(n));
        if conn.is_none() || fresh {
            match client.connect(addr, protocol).await {
                Ok(c) => {
                    stats.certificates.push(c.peer_cert.clone());
                    conn = Some(c);
                }
                Err(e) => {
                    stats
                        .failures
                        .push(format!("client {index} #{seq}: connect: {e}"));
                    conn = None;
                    tokio::time::sleep(options.pause).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let uid = format!("load-{index}-{seq}");
        let body = review(&uid);
        let started = Instant::now();
        let result = c
            .post("application/json", serde_json::to_vec(&body).expect("json"))
            .await;
        stats.latencies.push((started, started.elapsed()));
        match result {
            Ok(reply) if reply.status == hyper::StatusCode::OK => {
                let answer: Value = match serde_json::from_slice(&reply.body) {
                    Ok(v) => v,
                    Err(e) => {
                        stats.failures.push(format!("{uid}: not JSON: {e}"));
                        continue;
                    }
                };
                if answer["response"]["uid"] != uid.as_str() {
                    stats
                        .failures
                        .push(format!("{uid}: answered for {}", answer["response"]["uid"]));
                } else if let Err(e) = check(&body, &answer) {
                    stats.failures.push(format!("{uid}: {e}"));
                } else {
                    stats.answered += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(reply) => {
                stats
                    .failures
                    .push(format!("{uid}: HTTP {}: {}", reply.status, reply.text()));
            }
            Err(e) => {
                stats.failures.push(format!("{uid}: {e}"));
                conn = None;
            }
        }
        tokio::time::sleep(options.pause).await;
    }
    stats
}

/// The latencies of the reviews sent in `window`, sorted.
pub fn latencies_in(stats: &[ClientStats], window: std::ops::Range<Instant>) -> Vec<Duration> {
    let mut all: Vec<Duration> = stats
        .iter()
        .flat_map(|s| &s.latencies)
        .filter(|(sent, _)| window.contains(sent))
        .map(|(_, took)| *took)
        .collect();
    all.sort();
    all
}

/// The `p` quantile (0 < p ≤ 1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(at).copied().unwrap_or_default()
}

/// Sums answered reviews and gathers failures over all clients.
pub fn totals(stats: &[ClientStats]) -> (usize, Vec<&String>) {
    (
        stats.iter().map(|s| s.answered).sum(),
        stats.iter().flat_map(|s| &s.failures).collect(),
    )
}

/// Reviews back to back on one keep-alive connection until a draining server closes it:
/// every answer must be a 200 echoing its uid, and a failed request is allowed only once
/// `draining` is set. Counts answers into `answered`; ends with its count and how it ended.
pub fn reviews_until_closed(
    client: &Client,
    addr: SocketAddr,
    protocol: Protocol,
    name: String,
    draining: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> JoinHandle<(usize, String)> {
    let client = client.clone();
    tokio::spawn(async move {
        let mut conn = client.connect(addr, protocol).await.expect("connect");
        let (mut count, mut seq) = (0, 0);
        loop {
            seq += 1;
            let uid = format!("{name}-{seq}");
            let review = super::job_pod_review(&uid, "gitlab", |_| {});
            let body = serde_json::to_vec(&review).expect("json");
            match conn.post("application/json", body).await {
                Ok(reply) => {
                    // Whatever was answered was answered in full, with 200.
                    assert_eq!(reply.status, 200, "{uid}: {}", reply.text());
                    assert_eq!(reply.json()["response"]["uid"], uid.as_str());
                    count += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                    if reply
                        .headers
                        .get("connection")
                        .is_some_and(|v| v == "close")
                    {
                        return (count, "the server said Connection: close".to_string());
                    }
                }
                // After the drain began: the connection was closed between two reviews
                // (HTTP/1.1) or refused new streams (HTTP/2 GOAWAY).
                Err(e) => {
                    assert!(
                        draining.load(Ordering::Relaxed),
                        "{uid} failed before the drain: {e}"
                    );
                    return (count, e);
                }
            }
        }
    })
}
