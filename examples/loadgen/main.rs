//! loadgen: drives ci-pod-webhook the way the API server does, and measures it.
//!
//! TLS trusting a given CA; HTTP/1.1 keep-alive with N concurrent connections, or HTTP/2
//! with S streams per connection; each request POSTs the review file with its own
//! `request.uid`, and every answer must be a 200 echoing that uid, or it counts as an
//! error.
//!
//! - Closed loop (default): every worker sends its next request as soon as the last one
//!   is answered: the maximum throughput at that concurrency.
//! - Open loop (`--rate R`): a pacer thread issues R tickets per second at fixed intended
//!   send times; a free worker takes the next ticket, and latency is measured from the
//!   ticket's intended time, not from when the request went out. A server (or client)
//!   that falls behind therefore shows up as latency, not as fewer requests: no
//!   coordinated omission.
//!
//! `--server-pid` adds the server's RSS (before, sampled peak, VmHWM); `--metrics-url`
//! adds the server's own latency histogram over the measured window, next to ours.
//! See BENCHMARKS.md for the commands behind every published figure.

mod body;
mod conn;
mod report;
mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ci_pod_webhook::cli::serve::parse_duration;
use clap::Parser;
use hdrhistogram::Histogram;
use hyper::StatusCode;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use body::Template;
use conn::{Connector, Sender};

/// Load generator for ci-pod-webhook (see BENCHMARKS.md).
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen")]
pub struct Args {
    /// Webhook URL.
    #[arg(long, default_value = "https://127.0.0.1:8443/mutate")]
    url: String,
    /// CA certificate (PEM) to trust, e.g. the dev certificate's ca.crt.
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// Name the server certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// The AdmissionReview to POST.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "tests/fixtures/job-pod-review.json"
    )]
    review: PathBuf,
    /// Send the file byte for byte (default: compacted, as the API server sends JSON).
    #[arg(long)]
    as_is: bool,
    /// Send the file's uid on every request instead of a fresh one per request.
    #[arg(long)]
    keep_uid: bool,
    /// TCP+TLS connections.
    #[arg(short, long, default_value_t = 32)]
    connections: usize,
    /// HTTP/2 instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// HTTP/2 only: concurrent streams per connection.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Open loop: requests per second in total (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// How long to measure, after the warm-up (e.g. 10s, 500ms, 2m).
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load sent before measuring starts (not in the figures; errors still count).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// A request without an answer by then is an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Runtime threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// PID of the server: report its RSS (before the load, peak sampled, VmHWM) and the
    /// CPU time it and the load generator used per review.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's /metrics URL: compare its latency histogram with ours.
    #[arg(long, value_name = "URL")]
    metrics_url: Option<String>,
    /// Also print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let outcome = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    match outcome {
        Ok(results) if results.errors_total() == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(2),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Everything the workers share.
struct Shared {
    connector: Connector,
    template: Template,
    warmup_end: Instant,
    end: Instant,
    timeout: Duration,
    /// Open loop: intended send times, from the pacer.
    tickets: Option<Mutex<mpsc::UnboundedReceiver<Instant>>>,
}

/// One connection, shared by the streams that use it (HTTP/2) or owned by one worker.
type Slot = Arc<Mutex<Option<Sender>>>;

/// What one worker saw.
pub struct WorkerResult {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub error_samples: Vec<String>,
    pub last_done: Option<Instant>,
}

async fn run(args: Args) -> anyhow::Result<report::Results> {
    if !args.http2 && args.streams != 1 {
        bail!("--streams is for --http2; HTTP/1.1 carries one request at a time per connection");
    }
    if args.connections == 0 || args.streams == 0 {
        bail!("--connections and --streams must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of requests per second");
    }
    let ca = std::fs::read(&args.ca).with_context(|| format!("--ca {}", args.ca.display()))?;
    let file = std::fs::read(&args.review)
        .with_context(|| format!("--review {}", args.review.display()))?;
    let template = Template::new(&file, args.as_is, !args.keep_uid)?;
    let connector = Connector::new(&args.url, &ca, &args.server_name, args.http2)?;

    let idle_memory = args.server_pid.and_then(server::memory);
    if args.server_pid.is_some() && idle_memory.is_none() {
        bail!("--server-pid: cannot read /proc/<pid>/status");
    }
    // Open every connection first, so handshakes are not part of the figures.
    let mut slots: Vec<Slot> = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let sender = connector.open().await.map_err(anyhow::Error::msg)?;
        slots.push(Arc::new(Mutex::new(Some(sender))));
    }

    let start = Instant::now();
    let warmup_end = start + args.warmup;
    let end = warmup_end + args.duration;
    let tickets = args.rate.map(|rate| {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || pace(rate, start, end, &tx));
        Mutex::new(rx)
    });
    let shared = Arc::new(Shared {
        connector,
        template,
        warmup_end,
        end,
        timeout: args.timeout,
        tickets,
    });

    let stop_sampling = CancellationToken::new();
    let rss_sampler = args
        .server_pid
        .map(|pid| tokio::spawn(server::sample_rss(pid, stop_sampling.clone())));
    // CPU used by the server and by this process over the measured window.
    let cpu_before = args.server_pid.map(|pid| {
        tokio::spawn(async move {
            tokio::time::sleep_until(warmup_end.into()).await;
            (
                server::cpu_seconds(&pid.to_string()),
                server::cpu_seconds("self"),
            )
        })
    });
    let metrics_before = args.metrics_url.clone().map(|url| {
        tokio::spawn(async move {
            tokio::time::sleep_until(warmup_end.into()).await;
            server::scrape(&url).await
        })
    });

    // 1 µs to 100 s, 3 significant digits.
    let histogram = Histogram::new_with_bounds(1, 100_000_000, 3)?;
    let mut workers = Vec::new();
    for (c, slot) in slots.iter().enumerate() {
        for s in 0..args.streams {
            let id = c * args.streams + s;
            workers.push(tokio::spawn(worker(
                id,
                shared.clone(),
                slot.clone(),
                histogram.clone(),
            )));
        }
    }
    let mut results = Vec::new();
    for w in workers {
        results.push(w.await.context("a worker panicked")?);
    }

    let server_buckets = match (metrics_before, &args.metrics_url) {
        (Some(before), Some(url)) => {
            let before = before.await.context("metrics scrape")?;
            let after = server::scrape(url).await;
            match (before, after) {
                (Ok(b), Ok(a)) => Some(a.since(&b)),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("loadgen: cannot read the server's metrics: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let cpu = match (cpu_before, args.server_pid) {
        (Some(before), Some(pid)) => match before.await.context("CPU sample")? {
            (Some(server_before), Some(self_before)) => Some(report::CpuReport {
                server_seconds: server::cpu_seconds(&pid.to_string()).unwrap_or(server_before)
                    - server_before,
                loadgen_seconds: server::cpu_seconds("self").unwrap_or(self_before) - self_before,
                cores: std::thread::available_parallelism().map_or(1, usize::from),
            }),
            _ => None,
        },
        _ => None,
    };
    stop_sampling.cancel();
    let peak_sampled_kib = match rss_sampler {
        Some(task) => Some(task.await.unwrap_or(0)),
        None => None,
    };
    let memory = args.server_pid.and_then(|pid| {
        Some(report::MemoryReport {
            idle: idle_memory?,
            peak_sampled_kib: peak_sampled_kib?,
            end: server::memory(pid)?,
        })
    });
    let results = report::Results::merge(
        &args,
        shared.template.len(),
        shared.warmup_end,
        results,
        memory,
        cpu,
        server_buckets,
    )?;
    results.print(&args);
    Ok(results)
}

/// Issues open-loop tickets: intended send times `rate` per second from `start` to `end`.
/// A thread with a plain sleep, because tokio's timer rounds to whole milliseconds,
/// which at 2,000 requests/s would be a whole interval of error.
fn pace(rate: f64, start: Instant, end: Instant, tx: &mpsc::UnboundedSender<Instant>) {
    let mut i: u64 = 0;
    loop {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        if intended >= end {
            return;
        }
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        if tx.send(intended).is_err() {
            return;
        }
        i += 1;
    }
}

async fn worker(
    id: usize,
    shared: Arc<Shared>,
    slot: Slot,
    latency_us: Histogram<u64>,
) -> WorkerResult {
    let mut result = WorkerResult {
        latency_us,
        ok: 0,
        errors: BTreeMap::new(),
        error_samples: Vec::new(),
        last_done: None,
    };
    let mut seq: u64 = 0;
    loop {
        let intended = match &shared.tickets {
            Some(tickets) => match tickets.lock().await.recv().await {
                Some(t) => t,
                None => break,
            },
            None => {
                let now = Instant::now();
                if now >= shared.end {
                    break;
                }
                now
            }
        };
        seq += 1;
        let uid = shared.template.uid(id, seq);
        let outcome = tokio::time::timeout(shared.timeout, exchange(&shared, &slot, &uid)).await;
        let done = Instant::now();
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err((kind, message))) => Some((kind, message)),
            // An HTTP/1.1 connection was dropped with the request; HTTP/2 keeps its own.
            Err(_) => Some(("timeout", format!("no answer within {:?}", shared.timeout))),
        };
        match failure {
            None => {
                if intended >= shared.warmup_end {
                    let micros = u64::try_from((done - intended).as_micros()).unwrap_or(u64::MAX);
                    result.latency_us.saturating_record(micros.max(1));
                    result.ok += 1;
                    result.last_done = Some(done);
                }
            }
            Some((kind, message)) => {
                *result.errors.entry(kind).or_default() += 1;
                if result.error_samples.len() < 3 {
                    result.error_samples.push(message);
                }
                // Closed loop: a server that is down would otherwise be asked again at
                // once, in a tight loop (the open loop is paced by its tickets).
                if kind == "connect" && shared.tickets.is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    result
}

/// One request and its answer on the slot's connection (opened again if it closed).
/// An HTTP/1.1 connection is taken out of its slot while in use and put back after a
/// clean exchange; an HTTP/2 one stays in the slot and is shared by its streams.
async fn exchange(shared: &Shared, slot: &Slot, uid: &str) -> Result<(), (&'static str, String)> {
    let mut sender = {
        let mut guard = slot.lock().await;
        let sender = match guard.take() {
            Some(s) if s.is_open() => s,
            _ => shared.connector.open().await.map_err(|e| ("connect", e))?,
        };
        match &sender {
            Sender::Http2(s) => {
                let stream = Sender::Http2(s.clone());
                *guard = Some(sender);
                stream
            }
            Sender::Http1(_) => sender,
        }
    };
    let request = shared
        .connector
        .request(shared.template.body(uid))
        .map_err(|e| ("request", e))?;
    let (status, answer) = sender.send(request).await.map_err(|e| ("transport", e))?;
    if let Sender::Http1(_) = sender {
        *slot.lock().await = Some(sender);
    }
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
        return Err(("status", format!("HTTP {status}: {text}")));
    }
    body::check_answer(&answer, uid).map_err(|e| ("answer", e))
}
