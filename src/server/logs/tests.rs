use super::*;
use std::sync::mpsc;

/// A stdout stand-in whose bytes the test can read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn line(logs: &Logs, text: &str) {
    logs.make_writer()
        .write_all(text.as_bytes())
        .expect("never fails");
}

#[test]
fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
    let out = Captured::default();
    let (logs, guard) = spawn(out.clone()).expect("thread");
    let lines: Vec<String> = (0..5000).map(|i| format!("line {i}\n")).collect();
    for l in &lines {
        line(&logs, l);
    }
    drop(guard);
    assert_eq!(
        String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8"),
        lines.concat()
    );
}

#[test]
fn lines_are_written_without_the_guard_being_dropped() {
    let out = Captured::default();
    let (logs, _guard) = spawn(out.clone()).expect("thread");
    line(&logs, "one\n");
    // The thread writes within GATHER; wait for it without a deadline.
    while out.0.lock().expect("lock").is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(out.0.lock().expect("lock").as_slice(), b"one\n");
}

/// A stdout that takes nothing until the test says so.
struct Stuck {
    go: mpsc::Receiver<()>,
    inner: Captured,
}

impl Write for Stuck {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let _ = self.go.recv();
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_stdout_never_blocks_a_line_and_past_the_limit_lines_are_dropped_and_counted() {
    let (go, wait) = mpsc::channel();
    let inner = Captured::default();
    let stuck = Stuck {
        go: wait,
        inner: inner.clone(),
    };
    let (logs, guard) = spawn_with_limit(stuck, 100).expect("thread");
    // The first line is taken by the thread, which then blocks on the stuck stdout.
    line(&logs, "first\n");
    while !logs.shared.lock().waiting.is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Ten lines of 20 bytes: five fit under the limit of 100, five are dropped. None
    // of these calls may block (the test would hang).
    for i in 0..10 {
        line(&logs, &format!("{i:019}\n"));
    }
    let (dropped, waiting) = {
        let state = logs.shared.lock();
        (state.dropped, state.waiting.len())
    };
    // Unstick stdout before asserting: a failed assertion must not leave the
    // guard's drop waiting for the thread.
    for _ in 0..10 {
        let _ = go.send(());
    }
    drop(go);
    drop(guard);
    assert_eq!((dropped, waiting), (5, 100));
    let written = String::from_utf8(inner.0.lock().expect("lock").clone()).expect("utf8");
    let kept: String = (0..5).map(|i| format!("{i:019}\n")).collect();
    assert_eq!(written, format!("first\n{kept}"));
}
