//! What the load generator reads from the server under test: its memory
//! (`/proc/<pid>/status`) and its own latency histogram (`/metrics`), so the two views
//! of one run can be compared.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/<pid>/stat` (`pid` may be `self`). Clock ticks are 1/100 s (Linux `USER_HZ`).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Samples the RSS of `pid` every 100 ms until `stop`; returns the largest sample.
pub async fn sample_rss(pid: u32, stop: CancellationToken) -> u64 {
    let mut peak = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                if let Some(m) = memory(pid) {
                    peak = peak.max(m.rss_kib);
                }
            }
        }
    }
    peak
}

/// Cumulative counts of `ci_pod_webhook_request_duration_seconds_bucket`, summed over
/// outcomes, by upper bound in seconds (`+Inf` as `f64::INFINITY`).
#[derive(Debug, Clone, Default)]
pub struct Buckets(pub BTreeMap<u64, (f64, u64)>);

const BUCKET_METRIC: &str = "ci_pod_webhook_request_duration_seconds_bucket{";

/// Reads the server's latency histogram from its admin port (plain HTTP).
pub async fn scrape(url: &str) -> Result<Buckets, String> {
    let uri: Uri = url.parse().map_err(|e| format!("--metrics-url: {e}"))?;
    let authority = uri.authority().ok_or("--metrics-url has no host")?.clone();
    let tcp = TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/metrics", |p| p.as_str());
    let request = Request::get(path)
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(parse_buckets(&String::from_utf8_lossy(&body)))
}

fn parse_buckets(text: &str) -> Buckets {
    let mut out = Buckets::default();
    for line in text.lines().filter(|l| l.starts_with(BUCKET_METRIC)) {
        let Some(le) = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(b) => b,
                Err(_) => continue,
            }
        };
        let Some(count) = line
            .rsplit('}')
            .next()
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        // Keyed by the bound in nanoseconds, so the map iterates in bound order.
        let key = if bound.is_finite() {
            (bound * 1e9).round() as u64
        } else {
            u64::MAX
        };
        out.0.entry(key).or_insert((bound, 0)).1 += count;
    }
    out
}

impl Buckets {
    /// The counts observed between `before` and `self`.
    pub fn since(&self, before: &Buckets) -> Buckets {
        let mut out = self.clone();
        for (key, (_, count)) in &mut out.0 {
            let earlier = before.0.get(key).map_or(0, |(_, c)| *c);
            *count = count.saturating_sub(earlier);
        }
        out
    }

    pub fn total(&self) -> u64 {
        self.0.get(&u64::MAX).map_or(0, |(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_summed_over_outcomes() {
        let text = "\
# TYPE ci_pod_webhook_request_duration_seconds histogram
ci_pod_webhook_request_duration_seconds_bucket{le=\"5e-5\",outcome=\"mutated\"} 3
ci_pod_webhook_request_duration_seconds_bucket{le=\"+Inf\",outcome=\"mutated\"} 10
ci_pod_webhook_request_duration_seconds_bucket{outcome=\"skipped\",le=\"5e-5\"} 1
ci_pod_webhook_request_duration_seconds_bucket{outcome=\"skipped\",le=\"+Inf\"} 2
ci_pod_webhook_request_duration_seconds_count{outcome=\"skipped\"} 2
";
        let b = parse_buckets(text);
        assert_eq!(b.0.get(&50_000).map(|x| x.1), Some(4));
        assert_eq!(b.total(), 12);
    }
}
