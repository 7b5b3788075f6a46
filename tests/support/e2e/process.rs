//! Child processes of the control plane: free ports, log files, readiness, and the
//! watchdog that ends them all however the test binary ends.
//!
//! The shared control plane lives in a `static`, and statics are never dropped: a `Drop`
//! on it would never run. So every component joins the process group of a small shell
//! (the watchdog, one per control plane) that waits on a pipe from the test binary. The
//! kernel closes the pipe when the binary exits, whether it returned, panicked, aborted
//! or was killed; the watchdog then kills the group and removes the run directory, unless
//! a failed test marked it to keep. A control plane a test owns closes the pipe when it
//! is dropped, at the end of that test, with the same effect. Processes a test owns (a
//! webhook it stops) are also killed when their handle is dropped.

use std::collections::HashSet;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The file whose presence tells the watchdog to keep the run directory.
pub const KEEP_MARKER: &str = "KEEP";

/// Ports are picked from here: below the ephemeral range (32768+), where the kernel
/// would hand out the same numbers to outgoing connections.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port that was free a moment ago and that this binary has not handed out
/// before. Another process may still take it before the component binds it: starts are
/// retried on "address already in use" ([`retry_on_port_clash`]).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let given = given.get_or_insert_with(HashSet::new);
    let span = u64::from(PORTS.end - PORTS.start);
    for _ in 0..1000 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let offset = u16::try_from(hasher.finish() % span).expect("span fits u16");
        let port = PORTS.start + offset;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {PORTS:?} after 1000 tries");
}

/// Runs `start` up to three times while its error says a port was taken between
/// [`free_port`] and the bind.
pub async fn retry_on_port_clash<T, F, Fut>(what: &str, mut start: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for _ in 0..3 {
        match start().await {
            Ok(started) => return started,
            // Go says "address already in use", Rust "Address already in use".
            Err(error) if error.to_lowercase().contains("address already in use") => {
                last = error;
            }
            Err(error) => panic!("{what} did not start: {error}"),
        }
    }
    panic!("{what} did not start: a port clash three times; last: {last}");
}

/// The process group every component joins, and the pipe that keeps it alive.
pub struct Watchdog {
    pgid: u32,
    lifeline: Mutex<Option<ChildStdin>>,
    shell: Option<Child>,
}

impl Watchdog {
    /// Starts the watchdog for the run directory `dir`.
    pub fn start(dir: &Path) -> Watchdog {
        // TERM and INT are ignored so that the shell outlives `kill 0` long enough to
        // remove the directory; `kill -KILL 0` then ends it too.
        let script = r#"
            trap '' TERM INT HUP
            read -r _ || true
            kill -TERM 0 2>/dev/null
            sleep 1
            if [ -e "$1/KEEP" ]; then rm -rf "$1/etcd-data"; else rm -rf "$1"; fi
            kill -KILL 0
        "#;
        let (watchdog, _) = Self::spawn(script, &[dir.as_os_str()], false);
        watchdog
    }

    /// The watchdog of the machine's one test node (`node/`): it takes the host-wide
    /// `lock` first, waiting while an earlier node is stopped, and when the pipe closes
    /// runs `down` (scripts/node/node-down.sh) on the node's `state` directory, its
    /// output appended to `log`, still holding the lock: the next node starts on a clean
    /// host. Its processes stop by their pid files, so the group is not signalled.
    pub fn start_node(lock: &Path, down: &Path, state: &Path, log: &Path) -> Watchdog {
        use std::io::BufRead as _;
        let script = r#"
            trap '' TERM INT HUP
            exec 9>>"$1"
            if ! flock -n 9; then
                echo waiting
                flock -w 900 9 || { echo "timed out after 900 s"; exit 1; }
            fi
            echo locked
            read -r _ || true
            exec "$2" down "$3" >>"$4" 2>&1
        "#;
        let args = [lock, down, state, log].map(Path::as_os_str);
        let (watchdog, stdout) = Self::spawn(script, &args, true);
        let mut lines = std::io::BufReader::new(stdout.expect("piped stdout")).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line == "locked" => return watchdog,
                Some(Ok(line)) if line == "waiting" => eprintln!(
                    "kube-e2e: waiting for the node lock {}: another test node on this \
                     machine is running or being stopped",
                    lock.display()
                ),
                other => panic!(
                    "the node watchdog could not take the lock {} (needs flock, util-linux): {other:?}",
                    lock.display()
                ),
            }
        }
    }

    fn spawn(
        script: &str,
        args: &[&std::ffi::OsStr],
        stdout: bool,
    ) -> (Watchdog, Option<std::process::ChildStdout>) {
        let mut shell = Command::new("sh")
            .args(["-c", script, "kube-e2e-watchdog"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(if stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the watchdog shell (sh)");
        let lifeline = shell.stdin.take().expect("piped stdin");
        let out = shell.stdout.take();
        let watchdog = Watchdog {
            pgid: shell.id(),
            lifeline: Mutex::new(Some(lifeline)),
            shell: Some(shell),
        };
        (watchdog, out)
    }
}

impl Drop for Watchdog {
    /// Closes the pipe, so the watchdog ends the group and cleans up as when the binary
    /// exits, and reaps it in the background (it takes a second).
    fn drop(&mut self) {
        let lifeline = self
            .lifeline
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(lifeline);
        if let Some(mut shell) = self.shell.take() {
            std::thread::spawn(move || shell.wait());
        }
    }
}

/// One running component: its process and its log file. Killed when dropped.
pub struct Component {
    pub name: String,
    pub log: PathBuf,
    child: Mutex<Child>,
}

impl Component {
    /// Starts `command` in the watchdog's group with stdout and stderr in `log`.
    pub fn spawn(name: &str, mut command: Command, log: PathBuf, watchdog: &Watchdog) -> Component {
        let file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file.try_clone().expect("clone log handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(watchdog.pgid as i32)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        Component {
            name: name.to_string(),
            log,
            child: Mutex::new(child),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .id()
    }

    /// `Err` with the log's tail if the process has exited.
    pub fn check_running(&self) -> Result<(), String> {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 40)
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// Polls `ready` every 100 ms until it holds, the process exits or `limit` passes.
    pub async fn wait_until<F, Fut>(&self, limit: Duration, mut ready: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if ready().await {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "{} not ready after {limit:?}; end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process and waits for it.
    pub fn stop(&self) {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A plain-HTTP GET on loopback: the status and body, or `None` if it failed.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}
