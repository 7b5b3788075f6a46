//! The figures of one run: merged from the workers, printed for people (and as JSON).

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::server::{Buckets, Memory};
use crate::{Args, WorkerResult};

pub struct MemoryReport {
    /// Before the load (after the connections were opened).
    pub idle: Memory,
    pub peak_sampled_kib: u64,
    /// At the end: its `hwm_kib` is the peak since the server started.
    pub end: Memory,
}

/// CPU time over the measured window, from `/proc/<pid>/stat` (10 ms resolution).
pub struct CpuReport {
    pub server_seconds: f64,
    pub loadgen_seconds: f64,
    pub cores: usize,
}

pub struct Results {
    latency_us: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
    error_samples: Vec<String>,
    window_secs: f64,
    body_bytes: usize,
    memory: Option<MemoryReport>,
    cpu: Option<CpuReport>,
    server: Option<Buckets>,
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

impl Results {
    pub fn merge(
        args: &Args,
        body_bytes: usize,
        warmup_end: Instant,
        workers: Vec<WorkerResult>,
        memory: Option<MemoryReport>,
        cpu: Option<CpuReport>,
        server: Option<Buckets>,
    ) -> anyhow::Result<Results> {
        let mut latency_us = Histogram::new_with_bounds(1, 100_000_000, 3)?;
        let (mut ok, mut errors, mut error_samples) = (0, BTreeMap::new(), Vec::new());
        let mut last_done = warmup_end;
        for w in workers {
            latency_us.add(&w.latency_us)?;
            ok += w.ok;
            for (kind, n) in w.errors {
                *errors.entry(kind).or_default() += n;
            }
            if error_samples.len() < 5 {
                error_samples.extend(w.error_samples);
            }
            last_done = last_done.max(w.last_done.unwrap_or(warmup_end));
        }
        // Closed loop: up to the last answer. Open loop: the schedule's length, so that a
        // server that keeps up shows the requested rate.
        let window_secs = if args.rate.is_some() {
            args.duration.as_secs_f64()
        } else {
            (last_done - warmup_end).as_secs_f64()
        };
        Ok(Results {
            latency_us,
            ok,
            errors,
            error_samples,
            window_secs,
            body_bytes,
            memory,
            cpu,
            server,
        })
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    fn throughput(&self) -> f64 {
        if self.window_secs > 0.0 {
            self.ok as f64 / self.window_secs
        } else {
            0.0
        }
    }

    pub fn print(&self, args: &Args) {
        let mode = match args.rate {
            Some(rate) => {
                format!("open loop at {rate} requests/s (latency from the intended send time)")
            }
            None => "closed loop".to_string(),
        };
        let protocol = if args.http2 {
            format!("HTTP/2, {} streams per connection", args.streams)
        } else {
            "HTTP/1.1 keep-alive".to_string()
        };
        println!(
            "{} over {} TLS connections, {protocol}, {mode}",
            args.url, args.connections
        );
        println!(
            "review {} ({} bytes), warm-up {:?}, measured {:?}, {} loadgen thread(s)",
            args.review.display(),
            self.body_bytes,
            args.warmup,
            args.duration,
            args.threads
        );
        println!(
            "requests:   {} answered in {:.2} s = {:.0} reviews/s",
            self.ok,
            self.window_secs,
            self.throughput()
        );
        let h = &self.latency_us;
        let mut line = String::from("latency:   ");
        for (name, q) in QUANTILES {
            line.push_str(&format!(" {name} {}", fmt_us(h.value_at_quantile(q))));
        }
        line.push_str(&format!(
            " max {} mean {}",
            fmt_us(h.max()),
            fmt_us(h.mean() as u64)
        ));
        println!("{line}");
        let detail: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!(
            "errors:     {}{}",
            self.errors_total(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", detail.join(", "))
            }
        );
        for sample in &self.error_samples {
            println!("  e.g. {sample}");
        }
        if let Some(m) = &self.memory {
            println!(
                "server RSS: {} before the load, {} peak sampled (every 100 ms), VmHWM {} (peak since start), {} at the end",
                mib(m.idle.rss_kib),
                mib(m.peak_sampled_kib),
                mib(m.end.hwm_kib),
                mib(m.end.rss_kib)
            );
        }
        if let Some((server_us, loadgen_us)) = self.cpu_per_review() {
            let cores = self.cpu.as_ref().map_or(1, |c| c.cores);
            // Only a closed loop keeps both busy; at a fixed rate the CPU per review
            // includes waking up for each one, so it says nothing about the maximum.
            let capacity = if args.rate.is_none() {
                format!(
                    ": {:.0} reviews/s if the two had the {cores} cores to themselves",
                    cores as f64 * 1e6 / (server_us + loadgen_us)
                )
            } else {
                String::new()
            };
            println!(
                "CPU:        server {server_us:.0} µs, loadgen {loadgen_us:.0} µs per review{capacity}"
            );
        }
        if let Some(server) = &self.server {
            self.print_comparison(server);
        }
        if args.json {
            println!("{}", self.to_json());
        }
    }

    /// Cumulative share of requests at or under each of the server's bucket bounds, as
    /// the server saw them (handler time) and as we saw them (plus TLS, network, queues).
    fn print_comparison(&self, server: &Buckets) {
        let total = server.total();
        println!(
            "server histogram over the measured window ({total} reviews) vs loadgen ({}), cumulative:",
            self.latency_us.len()
        );
        println!("  {:>10}  {:>8}  {:>8}", "le", "server", "loadgen");
        for (bound, count) in server.0.values() {
            if !bound.is_finite() {
                continue;
            }
            let bound_us = (bound * 1e6).round() as u64;
            let ours = self.latency_us.count_between(0, bound_us);
            println!(
                "  {:>10}  {:>7.2}%  {:>7.2}%",
                fmt_us(bound_us),
                percent(*count, total),
                percent(ours, self.latency_us.len())
            );
        }
    }

    /// Server and load generator CPU time per answered review, in µs.
    fn cpu_per_review(&self) -> Option<(f64, f64)> {
        let cpu = self.cpu.as_ref()?;
        (self.ok > 0).then(|| {
            let per = |seconds: f64| seconds * 1e6 / self.ok as f64;
            (per(cpu.server_seconds), per(cpu.loadgen_seconds))
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        let h = &self.latency_us;
        let mut latency = serde_json::Map::new();
        for (name, q) in QUANTILES {
            latency.insert(name.into(), h.value_at_quantile(q).into());
        }
        latency.insert("max".into(), h.max().into());
        latency.insert("mean".into(), (h.mean().round() as u64).into());
        json!({
            "ok": self.ok,
            "seconds": self.window_secs,
            "throughput": self.throughput().round(),
            "latency_us": latency,
            "errors": self.errors_total(),
            "errors_by_kind": self.errors,
            "cpu_us_per_review": self.cpu_per_review().map(|(server, loadgen)| json!({
                "server": server.round(),
                "loadgen": loadgen.round(),
            })),
            "server_rss_kib": self.memory.as_ref().map(|m| json!({
                "before": m.idle.rss_kib,
                "peak_sampled": m.peak_sampled_kib,
                "hwm": m.end.hwm_kib,
                "end": m.end.rss_kib,
            })),
        })
    }
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * part as f64 / total as f64
    }
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
