//! The log writer: a review appends its line to a buffer and returns; a background
//! thread writes the buffer to stdout in batches.
//!
//! A review never waits for the log pipe, and never wakes another thread per line:
//! `tracing-appender`'s non-blocking writer sent every line through a channel and woke
//! its thread for each one: 5–8 µs of the server's ~90 µs of CPU per review at full
//! load, 30–40 µs at 2,000 reviews/s (BENCHMARKS.md, "The log writer"). Here the thread
//! is woken when the buffer goes from empty to not empty, then lets lines gather for
//! [`GATHER`] (or until [`BATCH`] bytes wait) and writes them with one call. Lines keep
//! their order and their timestamps (taken when the event happened); they reach stdout
//! at most [`GATHER`] later.
//!
//! If stdout stops taking lines (a full pipe), the buffer is bounded at [`LIMIT`]:
//! lines beyond it are dropped, counted, and reported in a warning once stdout takes
//! lines again. [`LogGuard`] writes what is left when it is dropped.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long lines may gather before they are written.
pub const GATHER: Duration = Duration::from_millis(20);
/// Waiting bytes that get written without waiting for the rest of [`GATHER`].
pub const BATCH: usize = 64 * 1024;
/// Waiting bytes beyond which new lines are dropped (25,000–40,000 review lines).
pub const LIMIT: usize = 8 * 1024 * 1024;

/// The `MakeWriter` for the fmt subscriber; cheap to clone.
#[derive(Clone)]
pub struct Logs {
    shared: Arc<Shared>,
}

/// Writes what is left, and stops the thread, when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    limit: usize,
}

#[derive(Default)]
struct State {
    waiting: Vec<u8>,
    dropped: u64,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bytes behind: still writable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the thread that writes to `out`.
pub fn spawn<W: Write + Send + 'static>(out: W) -> io::Result<(Logs, LogGuard)> {
    spawn_with_limit(out, LIMIT)
}

fn spawn_with_limit<W: Write + Send + 'static>(
    out: W,
    limit: usize,
) -> io::Result<(Logs, LogGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        limit,
    });
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".to_string())
            .spawn(move || write_batches(&shared, out))?
    };
    Ok((
        Logs {
            shared: shared.clone(),
        },
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    let mut state = shared.lock();
    loop {
        while state.waiting.is_empty() && !state.closing {
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if !state.closing && state.waiting.len() < BATCH {
            state = shared
                .wake
                .wait_timeout(state, GATHER)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut batch, &mut state.waiting);
        let dropped = std::mem::take(&mut state.dropped);
        let closing = state.closing;
        drop(state);
        // Nowhere to report a failing stdout: its lines are lost, the server goes on.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > 4 * BATCH {
            batch.shrink_to(BATCH);
        }
        if dropped > 0 {
            // Goes through the subscriber, so it has the configured format; it is
            // written with the next batch.
            tracing::warn!(
                dropped,
                "log lines dropped: stdout did not take them in time"
            );
        }
        state = shared.lock();
        if closing && state.waiting.is_empty() {
            return;
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line's writer: appends to the waiting bytes.
pub struct Sink<'a> {
    shared: &'a Shared,
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Sink<'a>;

    fn make_writer(&'a self) -> Sink<'a> {
        Sink {
            shared: &self.shared,
        }
    }
}

impl Write for Sink<'_> {
    /// The fmt subscriber writes each line with one call: a line is kept or dropped
    /// whole.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut state = self.shared.lock();
        let before = state.waiting.len();
        if state.closing {
            // After the guard: nobody writes these any more. Straight through.
            drop(state);
            return io::stdout().write(line);
        }
        if before + line.len() > self.shared.limit {
            state.dropped += 1;
            return Ok(line.len());
        }
        state.waiting.extend_from_slice(line);
        let after = state.waiting.len();
        drop(state);
        if before == 0 || (before < BATCH && after >= BATCH) {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
