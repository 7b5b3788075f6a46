//! A synthetic but realistic week of a CI cluster, as Prometheus would have scraped it:
//! job pods of several classes with known peaks (some over their class limits, a few
//! OOM-killed), exported by two webhook replicas (most pods by both, some by one), and
//! the kubelets' cAdvisor series: per container, plus the pod cgroup (`container=""`)
//! and the pause container (`"POD"`) that sizing must ignore, a container with two
//! series (a new cgroup id), and pods that are not job pods.
//!
//! Every number is chosen here, so the test knows each pod's peaks without asking
//! Prometheus; [`openmetrics`] writes the samples for `promtool`.

use std::fmt::Write as _;

pub const MI: i64 = 1 << 20;
pub const GI: i64 = 1 << 30;
/// The scrape interval of the synthetic series.
const STEP: i64 = 30;
const DAY: i64 = 24 * 3600;

/// xorshift64*: deterministic, so every run has the same week.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

pub struct Container {
    pub name: &'static str,
    /// Peak working set, bytes.
    pub memory: i64,
    /// Peak CPU rate, millicores (held for 5 minutes).
    pub cpu: i64,
    /// `container_oom_events_total` goes to 1 near the end.
    pub oom: bool,
    /// A second cgroup (another `id`), whose peak is this one's; the first peaks at half.
    pub two_series: bool,
}

pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// `None`: not a job pod (no info series).
    pub class: Option<&'static str>,
    pub project: Option<String>,
    pub start: i64,
    pub samples: i64,
    /// Which webhook replicas export its info series.
    pub replicas: [bool; 2],
    /// Whether the kubelet's cAdvisor series exist for it.
    pub cadvisor: bool,
    /// Also the pod cgroup and pause container series, with large values.
    pub pod_level: bool,
    pub containers: Vec<Container>,
}

fn container(name: &'static str, memory: i64, cpu: i64) -> Container {
    Container {
        name,
        memory,
        cpu,
        oom: false,
        two_series: false,
    }
}

/// The week before `until` (Unix seconds).
pub fn week(until: i64) -> Vec<Pod> {
    let mut rng = Rng(0x5eed_cafe_f00d);
    let mut pods = Vec::new();
    let job = |rng: &mut Rng,
               namespace: &str,
               class: &'static str,
               token: &str,
               containers: Vec<Container>| {
        let samples = rng.between(30, 80);
        let start = until - 6 * DAY - DAY / 2 + rng.between(0, 6 * DAY);
        let project = rng.between(1000, 1030);
        let replicas = match rng.between(0, 9) {
            0 => [true, false],
            1 => [false, true],
            _ => [true, true],
        };
        let concurrent = rng.between(0, 3);
        let suffix = format!("{:08x}", rng.next() as u32);
        Pod {
            namespace: namespace.to_string(),
            name: format!("runner-{token}-project-{project}-concurrent-{concurrent}-{suffix}"),
            class: Some(class),
            // One pod in ten has no project label (an older runner).
            project: (rng.between(0, 9) != 0).then(|| project.to_string()),
            start,
            samples,
            replicas,
            cadvisor: true,
            pod_level: false,
            containers,
        }
    };
    let helper = |rng: &mut Rng| {
        container(
            "helper",
            rng.between(20 * MI, 200 * MI),
            rng.between(10, 600),
        )
    };

    // k8srunner: build 5 CPU / 10Gi, helper and services 3 / 1Gi, max 8 / 16Gi.
    for i in 0..140 {
        let mut build = container(
            "build",
            rng.between(300 * MI, 8 * GI),
            rng.between(200, 4500),
        );
        if i % 28 == 3 {
            build.memory = 10 * GI + rng.between(200 * MI, 4 * GI);
            build.oom = i == 3 || i == 59;
        }
        if i % 23 == 7 {
            build.cpu = rng.between(5100, 7500);
        }
        build.two_series = i == 10;
        let mut containers = vec![build, helper(&mut rng)];
        if i % 3 == 0 {
            containers.push(container(
                "svc-0",
                rng.between(50 * MI, 900 * MI),
                rng.between(20, 2000),
            ));
        }
        if i % 50 == 0 {
            let mut db = container("db", GI + rng.between(MI, 500 * MI), rng.between(100, 1500));
            db.oom = i == 50;
            containers.push(db);
        }
        let mut pod = job(&mut rng, "gitlab-ci", "k8srunner", "t3xk8a1q", containers);
        pod.pod_level = i % 10 == 0;
        pods.push(pod);
    }
    // k8srunner-large: build no CPU limit / 32Gi, max 32Gi: three pods above 32Gi.
    for i in 0..70 {
        let mut build = container(
            "build",
            rng.between(2 * GI, 30 * GI),
            rng.between(1000, 28000),
        );
        if i % 25 == 4 {
            build.memory = 32 * GI + rng.between(GI, 6 * GI);
        }
        let namespace = if i % 2 == 0 {
            "gitlab-ci"
        } else {
            "gitlab-large"
        };
        let containers = vec![build, helper(&mut rng)];
        pods.push(job(
            &mut rng,
            namespace,
            "k8srunner-large",
            "l4rg3r00",
            containers,
        ));
    }
    // ska-k8srunner-dp: build 3 CPU / 1Gi, max 4 / 4Gi: many above 1Gi, two above 3 CPUs.
    for i in 0..60 {
        let mut build = container(
            "build",
            rng.between(200 * MI, 3500 * MI),
            rng.between(100, 2800),
        );
        if i == 5 {
            build.cpu = 3200;
        }
        if i == 40 {
            build.cpu = 3900;
        }
        let containers = vec![build, helper(&mut rng)];
        pods.push(job(
            &mut rng,
            "dp-ci",
            "ska-k8srunner-dp",
            "dpx00001",
            containers,
        ));
    }
    // k8srunner-gpu-v100: the webhook saw the pods, the kubelets' series are missing
    // (GPU nodes not scraped).
    for _ in 0..12 {
        let containers = vec![container("build", GI, 1000), helper(&mut rng)];
        let mut pod = job(
            &mut rng,
            "gpu-ci",
            "k8srunner-gpu-v100",
            "gpu00001",
            containers,
        );
        pod.cadvisor = false;
        pods.push(pod);
    }
    // Not job pods: the runner manager beside the jobs, and an application elsewhere.
    for (namespace, name, container_name) in [
        ("gitlab-ci", "gitlab-runner-7d9f8b6c4-x2x7q", "runner"),
        ("apps", "web-0", "build"),
    ] {
        pods.push(Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            class: None,
            project: None,
            start: until - 5 * DAY,
            samples: 60,
            replicas: [false, false],
            cadvisor: true,
            pod_level: true,
            containers: vec![container(container_name, 50 * GI, 30000)],
        });
    }
    pods
}

/// Memory samples: up to `peak` at one sample, below it elsewhere.
fn memory_values(peak: i64, samples: i64, at: i64) -> impl Iterator<Item = i64> {
    (0..samples).map(move |i| {
        let (num, den) = if i <= at {
            (i + 1, at + 1)
        } else {
            (samples - i, samples - at)
        };
        (i128::from(peak) * i128::from(num) / i128::from(den)) as i64
    })
}

/// CPU counter samples: `low` millicores, then `peak` for 10 intervals (5 minutes)
/// from interval `at`, then `low` again.
fn cpu_values(peak: i64, samples: i64, at: i64) -> impl Iterator<Item = f64> {
    let low = (peak / 3).max(1);
    let mut counter = 0.0_f64;
    (0..samples).map(move |i| {
        let value = counter;
        let rate = if (at..at + 10).contains(&i) {
            peak
        } else {
            low
        };
        counter += rate as f64 * STEP as f64 / 1000.0;
        value
    })
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

/// One series: its labels (`{…}`) and its samples (time, value).
type Series = (String, Vec<(i64, String)>);

/// The series of `pods`, as OpenMetrics text for `promtool tsdb create-blocks-from`.
pub fn openmetrics(pods: &[Pod]) -> String {
    let mut families: Vec<(&str, &str, Vec<Series>)> = Vec::new();
    let mut info = Vec::new();
    for pod in pods {
        let Some(class) = pod.class else { continue };
        for (replica, exported) in pod.replicas.iter().enumerate() {
            if !exported {
                continue;
            }
            let instance = format!("10.0.0.1{replica}:8080");
            let mut pairs = vec![
                ("class", class),
                ("instance", instance.as_str()),
                ("job", "ci-pod-webhook"),
                ("mode", "warn"),
                ("namespace", pod.namespace.as_str()),
                ("pod", pod.name.as_str()),
            ];
            if let Some(project) = &pod.project {
                pairs.push(("project", project));
            }
            let offset = 7 * replica as i64;
            let samples = (0..pod.samples)
                .map(|i| (pod.start + offset + i * STEP, "1".to_string()))
                .collect();
            info.push((labels(&pairs), samples));
        }
    }
    families.push(("ci_pod_webhook_job_pod_info", "gauge", info));

    let mut memory = Vec::new();
    let mut cpu = Vec::new();
    let mut oom = Vec::new();
    let mut rng = Rng(0x0dd_ba11);
    for pod in pods.iter().filter(|p| p.cadvisor) {
        let cadvisor = |container: &str, id: &str| {
            labels(&[
                ("container", container),
                ("id", id),
                ("instance", "node-7"),
                ("job", "kubelet"),
                ("namespace", pod.namespace.as_str()),
                ("pod", pod.name.as_str()),
            ])
        };
        let times = |values: Vec<String>| -> Vec<(i64, String)> {
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (pod.start + 3 + i as i64 * STEP, v))
                .collect()
        };
        let n = pod.samples;
        for c in &pod.containers {
            let mut cgroups = vec![(format!("/kubepods/{}/{}", pod.name, c.name), c.memory)];
            if c.two_series {
                cgroups[0].1 = c.memory / 2;
                cgroups.push((format!("/kubepods/{}/{}-2", pod.name, c.name), c.memory));
            }
            for (id, peak) in cgroups {
                let at = rng.between(n / 4, 3 * n / 4);
                let values = memory_values(peak, n, at).map(|v| v.to_string()).collect();
                memory.push((cadvisor(c.name, &id), times(values)));
            }
            let id = format!("/kubepods/{}/{}", pod.name, c.name);
            let at = rng.between(2, n - 12);
            let values = cpu_values(c.cpu, n, at).map(|v| format!("{v}")).collect();
            cpu.push((cadvisor(c.name, &id), times(values)));
            if c.name != "helper" {
                let values = (0..n)
                    .map(|i| if c.oom && i >= n - 3 { "1" } else { "0" }.to_string())
                    .collect();
                oom.push((cadvisor(c.name, &id), times(values)));
            }
        }
        if pod.pod_level {
            for name in ["", "POD"] {
                let id = format!("/kubepods/{}{name}", pod.name);
                let values = (0..n).map(|_| (20 * GI).to_string()).collect();
                memory.push((cadvisor(name, &id), times(values)));
                let values = cpu_values(9000, n, 2).map(|v| format!("{v}")).collect();
                cpu.push((cadvisor(name, &id), times(values)));
            }
        }
    }
    families.push(("container_memory_working_set_bytes", "gauge", memory));
    families.push(("container_cpu_usage_seconds_total", "counter", cpu));
    families.push(("container_oom_events_total", "counter", oom));

    let mut out = String::new();
    for (name, kind, series) in families {
        // OpenMetrics names a counter's family without `_total`.
        let family = name.strip_suffix("_total").unwrap_or(name);
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for (labels, samples) in series {
            for (t, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value} {t}");
            }
        }
    }
    out.push_str("# EOF\n");
    out
}
