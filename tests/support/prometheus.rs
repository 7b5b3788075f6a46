//! A real Prometheus on loopback, loaded with the series a test wrote: Debian's
//! `prometheus` package (`prometheus` and `promtool`; .ci/run installs it).
//!
//! The test writes its series as OpenMetrics text with timestamps; `promtool tsdb
//! create-blocks-from openmetrics` turns them into TSDB blocks, and Prometheus serves
//! them with no scrape configuration of its own and a retention long enough for any
//! timestamp. It runs in the process group of a watchdog (`e2e::process`), so it ends
//! with the test binary however that ends; a `TestPrometheus` a test owns is stopped
//! when dropped. Its run directory is `target/tmp/prometheus/<pid>-<name>/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::e2e::process::{self, Component, Watchdog};

/// How long Prometheus may take to open a few hundred blocks on a loaded machine.
const START: Duration = Duration::from_secs(60);

/// TLS for Prometheus' web server: its certificate and key files.
pub struct WebTls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

pub struct TestPrometheus {
    /// `http://127.0.0.1:PORT` (https with TLS).
    pub url: String,
    // Killed when dropped, the watchdog last.
    component: Component,
    _watchdog: Watchdog,
}

impl TestPrometheus {
    /// Imports `openmetrics` (which must end with `# EOF`) and starts Prometheus on it.
    pub async fn start(name: &str, openmetrics: &str, tls: Option<WebTls<'_>>) -> TestPrometheus {
        let dir = run_dir(name);
        let input = dir.join("series.om");
        std::fs::write(&input, openmetrics).expect("write the series");
        let data = dir.join("data");
        let import = Command::new(tool("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            import.status.success(),
            "promtool tsdb create-blocks-from openmetrics failed: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        let web_config = tls.map(|tls| {
            let path = dir.join("web.yml");
            let text = format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                tls.cert.display(),
                tls.key.display()
            );
            std::fs::write(&path, text).expect("write the web configuration");
            path
        });
        launch(&dir, "global:\n  evaluation_interval: 30s\n", web_config).await
    }

    /// Starts Prometheus scraping what `scrape_configs` (the YAML list of that key, as
    /// Prometheus' configuration file has it) names, every second.
    // Only tests/e2e uses it; tests/integration.rs includes this file too.
    #[allow(dead_code)]
    pub async fn scraping(name: &str, scrape_configs: &str) -> TestPrometheus {
        let dir = run_dir(name);
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 30s\nscrape_configs:\n{scrape_configs}"
        );
        launch(&dir, &config, None).await
    }

    /// The end of Prometheus' log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        process::tail(&self.component.log, 20)
    }
}

/// `target/tmp/prometheus/<pid>-<name>/`, empty.
fn run_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("prometheus")
        .join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the run directory");
    dir
}

/// Prometheus on `config`, its TSDB in `dir/data`, under a watchdog of its own.
async fn launch(dir: &Path, config: &str, web_config: Option<PathBuf>) -> TestPrometheus {
    std::fs::write(dir.join("prometheus.yml"), config).expect("write the configuration");
    let data = dir.join("data");
    let scheme = if web_config.is_some() {
        "https"
    } else {
        "http"
    };
    let watchdog = Watchdog::start(dir);
    let (component, port) = process::retry_on_port_clash("prometheus", || async {
        let port = process::free_port();
        let mut command = Command::new(tool("prometheus"));
        command
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Timestamps of any age stay: the default 15 days would delete old blocks.
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--log.level=info");
        if let Some(web) = &web_config {
            command.arg(format!("--web.config.file={}", web.display()));
        }
        let log = dir.join(format!("prometheus-{port}.log"));
        let component = Component::spawn("prometheus", command, log.clone(), &watchdog);
        component
            .wait_until(START, || async {
                std::fs::read_to_string(&log)
                    .is_ok_and(|l| l.contains("Server is ready to receive web requests"))
            })
            .await
            .map(|()| (component, port))
    })
    .await;
    TestPrometheus {
        url: format!("{scheme}://127.0.0.1:{port}"),
        component,
        _watchdog: watchdog,
    }
}

/// A binary of Debian's `prometheus` package.
fn tool(name: &str) -> &str {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(
        found,
        "{name} is not on the PATH: install Debian's prometheus package \
         (apt-get install --no-install-recommends prometheus; .ci/run does)"
    );
    name
}
