//! `ci-pod-webhook sizing` against a real Prometheus (tests/support/prometheus.rs),
//! loaded with a synthetic week whose every peak the test chose ([`synthetic`]). The
//! expected report is computed here from those peaks, by the definitions of
//! docs/sizing.md, without Prometheus, and compared with the command's JSON and table.

mod synthetic;

use std::process::{Command, Output};

use ci_pod_webhook_core::quantity::Quantity;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::OnceCell;

use crate::support::prometheus::{TestPrometheus, WebTls};
use synthetic::{GI, MI, Pod};

/// The end of the synthetic week.
const UNTIL: &str = "2026-05-04T00:00:00Z";
/// The default policy's classes, in its order.
const CLASSES: [&str; 6] = [
    "k8srunner",
    "k8srunner-large",
    "k8srunner-xlarge",
    "k8srunner-gpu-v100",
    "ska-k8srunner-dp",
    "ska-k8srunner-dp-gpu-a100",
];
const ROLES: [&str; 3] = ["build", "helper", "services"];

fn until() -> i64 {
    OffsetDateTime::parse(UNTIL, &Rfc3339)
        .expect("a time")
        .unix_timestamp()
}

/// The week, in one Prometheus shared by this file's tests (started on first use).
async fn week() -> &'static TestPrometheus {
    static WEEK: OnceCell<TestPrometheus> = OnceCell::const_new();
    WEEK.get_or_init(|| async {
        let text = synthetic::openmetrics(&synthetic::week(until()));
        TestPrometheus::start("sizing-week", &text, None).await
    })
    .await
}

fn sizing(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
        .args(["sizing", "--prometheus", url])
        .args(args)
        .env_remove("CI_POD_WEBHOOK_POLICY")
        .env_remove("PROMETHEUS_URL")
        .env_remove("PROMETHEUS_BEARER_TOKEN")
        .env_remove("PROMETHEUS_BEARER_TOKEN_FILE")
        .env_remove("PROMETHEUS_CA_FILE")
        .output()
        .expect("run ci-pod-webhook sizing")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- the expected report

/// The default policy's limits, written out: (CPU millicores, memory bytes).
fn limits(class: &str, role: &str) -> (Option<i64>, Option<i64>) {
    match (class, role) {
        ("k8srunner" | "k8srunner-gpu-v100" | "ska-k8srunner-dp-gpu-a100", "build") => {
            (Some(5000), Some(10 * GI))
        }
        ("k8srunner-large", "build") => (None, Some(32 * GI)),
        ("k8srunner-xlarge", "build") => (None, Some(128 * GI)),
        ("ska-k8srunner-dp", "build") => (Some(3000), Some(GI)),
        _ => (Some(3000), Some(GI)),
    }
}

/// The default policy's `max`: (CPU millicores, memory bytes).
fn ceiling(class: &str) -> (Option<i64>, Option<i64>) {
    match class {
        "k8srunner-large" => (None, Some(32 * GI)),
        "k8srunner-xlarge" => (None, Some(128 * GI)),
        "ska-k8srunner-dp" => (Some(4000), Some(4 * GI)),
        _ => (Some(8000), Some(16 * GI)),
    }
}

fn role_of(container: &str) -> &'static str {
    match container {
        "build" => "build",
        "helper" => "helper",
        _ => "services",
    }
}

#[derive(Debug, Default)]
struct Figures {
    limit: Option<i64>,
    p50: Option<i64>,
    p95: Option<i64>,
    p99: Option<i64>,
    max: Option<i64>,
    over: usize,
    oom: usize,
    suggested: Option<i64>,
    capped: bool,
}

/// (namespace, pod, project, memory peak, CPU peak).
type OverPod = (String, String, Option<String>, i64, i64);

#[derive(Debug)]
struct Expected {
    class: &'static str,
    role: &'static str,
    jobs: usize,
    memory: Figures,
    cpu: Figures,
    /// (namespace, pod, project, memory peak, CPU peak), worst first.
    over: Vec<OverPod>,
    no_data: bool,
}

/// `a / b` rounded up, for positive numbers.
fn up(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// Nearest rank: the value at rank ⌈p/100 × n⌉.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    (!sorted.is_empty()).then(|| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1])
}

/// p99 × 1.2, rounded up to a quarter of the power of two below it, at least 64Mi.
fn suggest_memory(p99: i64) -> i64 {
    let wanted = up(p99 * 12, 10);
    let mut power = 1;
    while power * 2 <= wanted {
        power *= 2;
    }
    let step = (power / 4).max(64 * MI);
    up(wanted, step) * step
}

/// p99 × 1.2, rounded up to 100m up to 1 CPU, 500m up to 4, whole CPUs above.
fn suggest_cpu(p99: i64) -> i64 {
    let wanted = up(p99 * 12, 10);
    let step = if wanted <= 1000 {
        100
    } else if wanted <= 4000 {
        500
    } else {
        1000
    };
    up(wanted, step) * step
}

fn figures(
    peaks: &[i64],
    limit: Option<i64>,
    ceiling: Option<i64>,
    suggest: fn(i64) -> i64,
) -> Figures {
    let mut sorted = peaks.to_vec();
    sorted.sort_unstable();
    let p99 = percentile(&sorted, 99);
    let wanted = p99.map(suggest);
    let capped = matches!((wanted, ceiling), (Some(w), Some(c)) if w > c);
    Figures {
        limit,
        p50: percentile(&sorted, 50),
        p95: percentile(&sorted, 95),
        p99,
        max: sorted.last().copied(),
        over: limit.map_or(0, |l| sorted.iter().filter(|&&v| v > l).count()),
        oom: 0,
        suggested: if capped { ceiling } else { wanted },
        capped,
    }
}

fn expected(pods: &[Pod]) -> Vec<Expected> {
    let mut all = Vec::new();
    for class in CLASSES {
        let of_class: Vec<&Pod> = pods.iter().filter(|p| p.class == Some(class)).collect();
        let measured: Vec<&&Pod> = of_class.iter().filter(|p| p.cadvisor).collect();
        for role in ROLES {
            // Each pod's peak for the role: the highest of its containers of that role.
            let mut rows = Vec::new();
            for pod in &measured {
                let mine: Vec<_> = pod
                    .containers
                    .iter()
                    .filter(|c| role_of(c.name) == role)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let memory = mine.iter().map(|c| c.memory).max().unwrap_or(0);
                let cpu = mine.iter().map(|c| c.cpu).max().unwrap_or(0);
                let oom = mine.iter().any(|c| c.oom);
                rows.push((pod, memory, cpu, oom));
            }
            let (cpu_limit, memory_limit) = limits(class, role);
            let (cpu_max, memory_max) = ceiling(class);
            let memories: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let cpus: Vec<i64> = rows.iter().map(|r| r.2).collect();
            let mut memory = figures(&memories, memory_limit, memory_max, suggest_memory);
            memory.oom = rows.iter().filter(|r| r.3).count();
            let cpu = figures(&cpus, cpu_limit, cpu_max, suggest_cpu);
            let ratio = |peak: i64, limit: Option<i64>| {
                limit.filter(|l| peak > *l).map(|l| peak as f64 / l as f64)
            };
            let mut over: Vec<(f64, OverPod)> = rows
                .iter()
                .filter_map(|(pod, m, c, _)| {
                    let worst = [ratio(*m, memory_limit), ratio(*c, cpu_limit)]
                        .into_iter()
                        .flatten()
                        .reduce(f64::max)?;
                    Some((
                        worst,
                        (
                            pod.namespace.clone(),
                            pod.name.clone(),
                            pod.project.clone(),
                            *m,
                            *c,
                        ),
                    ))
                })
                .collect();
            over.sort_by(|a, b| {
                b.0.total_cmp(&a.0)
                    .then_with(|| (&a.1.0, &a.1.1).cmp(&(&b.1.0, &b.1.1)))
            });
            all.push(Expected {
                class,
                role,
                jobs: rows.len(),
                memory,
                cpu,
                over: over.into_iter().map(|(_, o)| o).collect(),
                no_data: rows.is_empty(),
            });
        }
    }
    all
}

// ---------------------------------------------------------------- reading the output

/// A JSON quantity (canonical, as Kubernetes writes it) in `unit`s: 1 for bytes, 1000
/// for millicores.
fn quantity(value: &Value, millis: bool) -> Option<i64> {
    let text = value.as_str()?;
    let q = Quantity::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(q.to_string(), text, "quantities are written canonically");
    Some(if millis {
        q.milli_value_ceil()
    } else {
        q.value_ceil()
    })
}

fn check_figures(json: &Value, want: &Figures, millis: bool, what: &str) {
    let q = |key: &str| quantity(&json[key], millis);
    assert_eq!(q("limit"), want.limit, "{what} limit");
    assert_eq!(q("p50"), want.p50, "{what} p50");
    assert_eq!(q("p95"), want.p95, "{what} p95");
    assert_eq!(q("p99"), want.p99, "{what} p99");
    assert_eq!(q("max"), want.max, "{what} max");
    assert_eq!(json["over_limit"], want.over, "{what} over_limit");
    assert_eq!(q("suggested"), want.suggested, "{what} suggested");
    assert_eq!(json["capped"], want.capped, "{what} capped");
    if !millis {
        assert_eq!(json["oom_killed"], want.oom, "{what} oom_killed");
    }
}

/// Memory for people, as the table writes it: the largest binary unit, one decimal,
/// rounded up.
fn human_memory(bytes: Option<i64>) -> String {
    let Some(bytes) = bytes else {
        return "-".to_string();
    };
    let units = ["Ki", "Mi", "Gi", "Ti"];
    let mut scale = 1i64;
    let mut unit = None;
    for (i, _) in units.iter().enumerate() {
        if bytes >= scale * 1024 {
            scale *= 1024;
            unit = Some(i);
        }
    }
    match unit {
        None => bytes.to_string(),
        Some(i) => {
            let tenths = up(bytes * 10, scale);
            format!("{}.{}{}", tenths / 10, tenths % 10, units[i])
        }
    }
}

fn human_cpu(millicores: Option<i64>) -> String {
    millicores.map_or("-".to_string(), |m| {
        let hundredths = up(m, 10);
        format!("{}.{:02}", hundredths / 100, hundredths % 100)
    })
}

fn memory_quantity(bytes: i64) -> String {
    Quantity::from_units(bytes)
        .with_format(ci_pod_webhook_core::quantity::Format::BinarySI)
        .to_string()
}

fn cpu_quantity(millicores: i64) -> String {
    Quantity::from_milli(millicores).to_string()
}

fn limit_cell(limit: Option<i64>, show: fn(i64) -> String) -> String {
    limit.map_or("none".to_string(), show)
}

fn suggested_cell(f: &Figures, show: fn(i64) -> String) -> Vec<String> {
    let mut cells = vec![f.suggested.map_or("-".to_string(), show)];
    if f.capped {
        cells.push("(max)".to_string());
    }
    cells
}

/// The lines of the table's section that starts with `title`, up to a blank line.
fn section<'a>(table: &'a str, title: &str) -> Vec<&'a str> {
    table
        .split("\n\n")
        .find(|block| block.starts_with(title))
        .unwrap_or_else(|| panic!("no {title} section in:\n{table}"))
        .lines()
        .skip(1)
        .collect()
}

fn tokens(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn json_and_table_match_the_peaks_of_the_synthetic_week() {
    let prometheus = week().await;
    let pods = synthetic::week(until());
    let want = expected(&pods);
    // Ensure the week is what the assertions need: every case is there.
    let k8s_build = &want[0];
    assert!(k8s_build.memory.over >= 5 && k8s_build.cpu.over >= 6 && k8s_build.over.len() > 10);
    assert!(k8s_build.memory.oom == 2 && !k8s_build.memory.capped);
    assert!(want.iter().any(|e| e.memory.capped) && want.iter().any(|e| e.cpu.capped));

    let output = sizing(&prometheus.url, &["--until", UNTIL, "-o", "json"]);
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "{stderr}\n{}",
        prometheus.log_tail()
    );
    assert!(
        !stderr.contains('\x1b'),
        "no progress line off a terminal: {stderr:?}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["prometheus"], prometheus.url.as_str());
    assert_eq!(report["since"], "7d");
    assert_eq!(report["until"], UNTIL);
    assert_eq!(report["headroom"], "1.2");
    let entries = report["classes"].as_array().expect("classes");
    assert_eq!(entries.len(), want.len());
    for (entry, want) in entries.iter().zip(&want) {
        let what = format!("{} {}", want.class, want.role);
        assert_eq!(entry["class"], want.class, "{what}");
        assert_eq!(entry["container"], want.role, "{what}");
        assert_eq!(entry["jobs"], want.jobs, "{what} jobs");
        check_figures(
            &entry["memory"],
            &want.memory,
            false,
            &format!("{what} memory"),
        );
        check_figures(&entry["cpu"], &want.cpu, true, &format!("{what} cpu"));
        assert_eq!(
            entry["no_data"].is_string(),
            want.no_data,
            "{what}: {entry}"
        );
        let over = entry["over"].as_array().expect("over");
        let got: Vec<OverPod> = over
            .iter()
            .map(|o| {
                (
                    o["namespace"].as_str().expect("namespace").to_string(),
                    o["pod"].as_str().expect("pod").to_string(),
                    o["project"].as_str().map(str::to_string),
                    quantity(&o["memory_peak"], false).expect("memory peak"),
                    quantity(&o["cpu_peak"], true).expect("cpu peak"),
                )
            })
            .collect();
        assert_eq!(got, want.over, "{what}: the pods over a limit, worst first");
    }
    // Why a class has no data.
    let why = |class: &str| {
        entries
            .iter()
            .find(|e| e["class"] == class && e["container"] == "build")
            .and_then(|e| e["no_data"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(why("k8srunner-xlarge").starts_with("no ci_pod_webhook_job_pod_info series"));
    assert_eq!(
        why("k8srunner-gpu-v100"),
        "no cAdvisor series (container_memory_working_set_bytes, container_cpu_usage_seconds_total) \
         for the class's 12 job pod(s)"
    );

    // The table says the same.
    let output = sizing(&prometheus.url, &["--until", UNTIL]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    let shown: Vec<&Expected> = want.iter().filter(|e| e.jobs > 0).collect();
    let memory_rows = section(&table, "MEMORY");
    assert_eq!(memory_rows.len(), shown.len() + 1, "{table}");
    for (line, e) in memory_rows[1..].iter().zip(&shown) {
        let m = &e.memory;
        let mut cells = vec![
            e.class.to_string(),
            e.role.to_string(),
            e.jobs.to_string(),
            limit_cell(m.limit, memory_quantity),
            human_memory(m.p50),
            human_memory(m.p95),
            human_memory(m.p99),
            human_memory(m.max),
            m.over.to_string(),
            m.oom.to_string(),
        ];
        cells.extend(suggested_cell(m, memory_quantity));
        assert_eq!(tokens(line), cells, "{table}");
    }
    let cpu_rows = section(&table, "CPU");
    for (line, e) in cpu_rows[1..].iter().zip(&shown) {
        let c = &e.cpu;
        let mut cells = vec![
            e.class.to_string(),
            e.role.to_string(),
            e.jobs.to_string(),
            limit_cell(c.limit, cpu_quantity),
            human_cpu(c.p50),
            human_cpu(c.p95),
            human_cpu(c.p99),
            human_cpu(c.max),
            c.over.to_string(),
        ];
        cells.extend(suggested_cell(c, cpu_quantity));
        assert_eq!(tokens(line), cells, "{table}");
    }
    let no_data = section(&table, "NO DATA");
    assert_eq!(no_data.len(), 3, "{table}");
    assert!(
        no_data[1].starts_with("k8srunner-gpu-v100: no cAdvisor series"),
        "{table}"
    );
    // The pods over a limit: the ten worst of each class and role, then how many more.
    let over_rows = section(&table, "OVER THE LIMIT");
    let mut expected_rows = Vec::new();
    for e in shown.iter().filter(|e| !e.over.is_empty()) {
        for (namespace, pod, project, m, c) in e.over.iter().take(10) {
            let pct = |peak: i64, limit: Option<i64>, show: fn(Option<i64>) -> String| match limit {
                Some(l) => vec![show(Some(peak)), format!("({}%)", up(peak * 100, l))],
                None => vec![show(Some(peak))],
            };
            let mut cells = vec![
                e.class.to_string(),
                e.role.to_string(),
                namespace.clone(),
                pod.clone(),
                project.clone().unwrap_or_else(|| "-".to_string()),
            ];
            cells.extend(pct(*m, e.memory.limit, human_memory));
            cells.extend(pct(*c, e.cpu.limit, human_cpu));
            expected_rows.push(cells);
        }
        if e.over.len() > 10 {
            expected_rows.push(tokens(&format!("… and {} more", e.over.len() - 10)));
        }
    }
    let got_rows: Vec<Vec<String>> = over_rows[1..].iter().map(|l| tokens(l)).collect();
    assert_eq!(got_rows, expected_rows, "{table}");
}

#[tokio::test]
async fn fail_on_over_limit_exits_3_for_a_rollout_gate() {
    let prometheus = week().await;
    let gated = sizing(
        &prometheus.url,
        &["--until", UNTIL, "--fail-on", "over-limit"],
    );
    assert_eq!(gated.status.code(), Some(3), "{}", text(&gated.stderr));
    let plain = sizing(&prometheus.url, &["--until", UNTIL, "--since", "1h"]);
    assert_eq!(
        plain.status.code(),
        Some(1),
        "an hour with no job pod is an error"
    );
}

#[tokio::test]
async fn an_empty_window_is_one_clear_line() {
    let prometheus = week().await;
    let output = sizing(&prometheus.url, &["--until", "2026-01-01T00:00:00Z"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: no job pods in the window (7d up to 2026-01-01T00:00:00Z): Prometheus at {} \
             has no ci_pod_webhook_job_pod_info series then.",
            prometheus.url
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unreachable_prometheus_is_one_clear_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let output = sizing(&format!("http://127.0.0.1:{port}"), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: cannot reach Prometheus at http://127.0.0.1:{port}: Connection refused (os error 111)\n"
        )
    );
}

/// A stand-in for a Prometheus behind an authenticating proxy: 401 unless the bearer
/// token is `s3cret`, else an empty answer. Answers each connection once.
async fn token_gate() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/prometheus", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body by its length.
                let head_end = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let path_ok = head.starts_with("post /prometheus/api/v1/query http/1.1");
                let (status, body) = if !path_ok {
                    ("404 Not Found", "not found".to_string())
                } else if head.contains("\r\nauthorization: bearer s3cret\r\n") {
                    (
                        "200 OK",
                        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
                            .to_string(),
                    )
                } else {
                    ("401 Unauthorized", "Unauthorized\n".to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_bearer_token_is_sent_and_a_refused_one_is_one_clear_line() {
    let (url, gate) = token_gate().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, "s3cret\n").expect("write");
    std::fs::write(&bad, "wrong").expect("write");
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                sizing(&url, &args)
            })
            .await
            .expect("join")
        }
    };

    let refused = run(vec![
        "--bearer-token-file".into(),
        bad.display().to_string(),
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        text(&refused.stderr),
        format!(
            "error: Prometheus at {url} refused the request with HTTP 401: the bearer token was \
             not accepted (--bearer-token-file, $PROMETHEUS_BEARER_TOKEN)\n"
        )
    );
    let missing = run(vec![]).await;
    assert!(text(&missing.stderr).contains("it wants credentials: pass --bearer-token-file"));
    // Accepted: the answer is empty, so the window is.
    let accepted = run(vec![
        "--bearer-token-file".into(),
        good.display().to_string(),
    ])
    .await;
    assert!(
        text(&accepted.stderr).starts_with("error: no job pods in the window"),
        "{}",
        text(&accepted.stderr)
    );
    gate.abort();
}

/// A small Prometheus over TLS: one day of the synthetic pods ending at [`UNTIL`], and,
/// a month earlier, info series whose pod labels a scrape without honorLabels renamed.
#[tokio::test]
async fn https_with_a_ca_file_and_an_info_series_the_scrape_relabelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = crate::support::write_certs(dir.path());
    let _ = certs;
    let mut pods = synthetic::week(until());
    pods.retain(|p| p.start > until() - 86_400 + 3600 && p.class.is_some());
    assert!(pods.len() > 10, "{} pods on the last day", pods.len());
    let mut text_series = synthetic::openmetrics(&pods);
    let month_ago = until() - 30 * 86_400;
    let relabelled: String = (0..10)
        .map(|i| {
            format!(
                "ci_pod_webhook_job_pod_info{{class=\"k8srunner\",exported_namespace=\"gitlab-ci\",\
                 exported_pod=\"runner-x-{i}\",namespace=\"ci-pod-webhook\",pod=\"ci-pod-webhook-0\"}} 1 {}\n",
                month_ago - 600 + i * 30
            )
        })
        .collect();
    // Into the info family, which comes first.
    let at = text_series.find('\n').expect("a TYPE line") + 1;
    text_series.insert_str(at, &relabelled);
    let prometheus = TestPrometheus::start(
        "sizing-tls",
        &text_series,
        Some(WebTls {
            cert: &dir.path().join("tls.crt"),
            key: &dir.path().join("tls.key"),
        }),
    )
    .await;
    assert!(prometheus.url.starts_with("https://"));
    let ca = dir.path().join("ca.crt").display().to_string();

    let output = sizing(
        &prometheus.url,
        &[
            "--until",
            UNTIL,
            "--since",
            "1d",
            "--ca-file",
            &ca,
            "-o",
            "json",
        ],
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stderr),
        prometheus.log_tail()
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let jobs: u64 = report["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .filter(|e| e["container"] == "build")
        .map(|e| e["jobs"].as_u64().expect("jobs"))
        .sum();
    let measured = pods.iter().filter(|p| p.cadvisor).count() as u64;
    assert_eq!(jobs, measured);

    let untrusted = sizing(&prometheus.url, &["--until", UNTIL]);
    let stderr = text(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach Prometheus at {}: ",
            prometheus.url
        )) && stderr.contains("--ca-file"),
        "{stderr}"
    );

    let month_ago_text = OffsetDateTime::from_unix_timestamp(month_ago)
        .expect("a time")
        .format(&Rfc3339)
        .expect("RFC 3339");
    let renamed = sizing(
        &prometheus.url,
        &["--until", &month_ago_text, "--ca-file", &ca],
    );
    let stderr = text(&renamed.stderr);
    assert_eq!(renamed.status.code(), Some(1));
    assert!(
        stderr.contains("has exported_namespace/exported_pod labels")
            && stderr.contains("honorLabels: true"),
        "{stderr}"
    );
}
