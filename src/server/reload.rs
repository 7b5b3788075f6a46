//! Live reload of the files the server was started with: the serving certificate and
//! key, the `--client-ca` file, and the policy file.
//!
//! Kubernetes updates a mounted Secret or ConfigMap by writing a new directory and
//! swapping the `..data` symlink to it, so an inotify watch on `tls.crt` never fires.
//! Polling works everywhere: every interval the files are read and hashed, and only
//! content that changed is parsed. A file that does not parse is refused, logged and
//! counted once; the last good one stays in force until the content changes again.
//! (A certificate and key rewritten one after the other in place, rather than swapped
//! together, can be seen half-changed by one look: that look is refused and counted,
//! and the next one applies the pair.)

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::metrics::ReloadCounters;

type Digest = [u8; 32];
/// Stands for "could not read the files": no SHA-256 of real content is all zeros.
const UNREADABLE: Digest = [0; 32];

/// A set of files read and compared together (a certificate and its key change as one).
#[derive(Debug)]
pub struct Watched {
    paths: Vec<PathBuf>,
    last: Digest,
}

/// What one look at the files found.
enum Seen {
    Unchanged,
    Changed(Vec<Vec<u8>>),
    /// Unreadable now, and readable at the previous look.
    Unreadable(io::Error),
}

/// Why a changed file was refused, for the log.
pub type Refusal = Box<dyn std::error::Error + Send + Sync>;

impl Watched {
    /// Reads the files for the first time, at start-up (where a failure is fatal).
    pub fn read_now(paths: Vec<PathBuf>) -> io::Result<(Watched, Vec<Vec<u8>>)> {
        let contents = read_all(&paths)?;
        let last = digest(&contents);
        Ok((Watched { paths, last }, contents))
    }

    async fn look(&mut self) -> Seen {
        let paths = self.paths.clone();
        let read = tokio::task::spawn_blocking(move || read_all(&paths))
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join)));
        match read {
            Ok(contents) => {
                let now = digest(&contents);
                if now == self.last {
                    Seen::Unchanged
                } else {
                    self.last = now;
                    Seen::Changed(contents)
                }
            }
            Err(_) if self.last == UNREADABLE => Seen::Unchanged,
            Err(error) => {
                self.last = UNREADABLE;
                Seen::Unreadable(error)
            }
        }
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        names.join(", ")
    }
}

/// Looks at `watched` every `interval` until `stop`, handing changed contents to
/// `apply`, which parses them and puts them in force or refuses them.
pub async fn watch<F>(
    what: &'static str,
    mut watched: Watched,
    interval: Duration,
    counters: ReloadCounters,
    stop: CancellationToken,
    mut apply: F,
) where
    F: FnMut(&[Vec<u8>]) -> Result<(), Refusal> + Send,
{
    let files = watched.describe();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.reset(); // The files were read at start-up: the first look is one interval on.
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match watched.look().await {
            Seen::Unchanged => {}
            Seen::Changed(contents) => match apply(&contents) {
                Ok(()) => {
                    counters.success.inc();
                    tracing::info!(what, files, "reloaded");
                }
                Err(error) => {
                    counters.failure.inc();
                    let error = one_line(&error.to_string());
                    tracing::warn!(what, files, %error, "refused a changed file; the last good one stays in force");
                }
            },
            Seen::Unreadable(error) => {
                counters.failure.inc();
                tracing::warn!(what, files, %error, "cannot read; the last good one stays in force");
            }
        }
    }
}

/// A refusal as one log line: a policy with several problems lists one per line, and a
/// line break would split the text log's one line per event (and its grep).
fn one_line(error: &str) -> String {
    let lines: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ")
}

fn read_all(paths: &[PathBuf]) -> io::Result<Vec<Vec<u8>>> {
    paths
        .iter()
        .map(|path| {
            std::fs::read(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        })
        .collect()
}

fn digest(contents: &[Vec<u8>]) -> Digest {
    let mut hasher = Sha256::new();
    for file in contents {
        // The length keeps ("ab", "c") and ("a", "bc") apart.
        hasher.update((file.len() as u64).to_le_bytes());
        hasher.update(file);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests;
