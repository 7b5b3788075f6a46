//! Deadlines on an HTTP/1.1 connection's socket, kept apart by what the connection is
//! waiting for.
//!
//! hyper's own header-read timeout also runs while a keep-alive connection waits for its
//! next request, so a 2 s bound on slow headers closed idle connections after 2 s. The
//! API server speaks HTTP/1.1 to admission webhooks and keeps idle connections for 90 s
//! (kubernetes/kubernetes#82090); when it sends a review on a connection at the moment the
//! webhook closes it, the review fails, and with `failurePolicy: Ignore` the pod is
//! admitted without the policy. So here:
//!
//! - the *head* of a request (the first one on a new connection, or the next one once its
//!   first byte arrives) must be complete within the header timeout (2 s): slow headers
//!   are still cut off quickly;
//! - between requests, a connection may stay *idle* for the keep-alive timeout (120 s,
//!   longer than the API server's 90 s, so the client is the one that closes);
//! - while a request is handled (from its head to its answer, tracked by [`Phase`]) there
//!   is no read deadline here: the request timeout bounds it;
//! - a write that makes no progress for the send timeout (10 s: a client that does not
//!   read its answers, say after pipelining requests) ends the connection.
//!
//! HTTP/2 connections are not wrapped: hyper closes them with GOAWAY, which clients
//! retry safely, and finds dead peers with PINGs; the listener bounds a silent or idle
//! one with the same header and keep-alive timeouts (`listener::until_idle`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The requests of one connection: how many were started, how many are being handled
/// (counted by the service), and since when none is (`server::peers` closes the one
/// idle longest to make room for a trusted peer).
#[derive(Debug)]
pub struct Phase {
    started: AtomicUsize,
    handling: AtomicUsize,
    /// When the phase was made (the connection's accept).
    born: Instant,
    /// Microseconds after `born` when the last request ended (0: none has yet).
    idle_at: AtomicU64,
}

/// One request being handled, for as long as it lives.
pub struct Handling(Arc<Phase>);

impl Default for Phase {
    fn default() -> Self {
        Phase {
            started: AtomicUsize::new(0),
            handling: AtomicUsize::new(0),
            born: Instant::now(),
            idle_at: AtomicU64::new(0),
        }
    }
}

impl Phase {
    pub fn start(self: &Arc<Self>) -> Handling {
        self.handling.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        Handling(self.clone())
    }

    /// (requests started so far, whether one is being handled now)
    pub fn now(&self) -> (usize, bool) {
        let handling = self.handling.load(Ordering::Acquire) > 0;
        (self.started.load(Ordering::Acquire), handling)
    }

    /// Since when no request has been handled; `None` while one is.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.handling.load(Ordering::Acquire) > 0 {
            return None;
        }
        let micros = self.idle_at.load(Ordering::Relaxed);
        Some(self.born + Duration::from_micros(micros))
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        // The time first, so that whoever sees no request in flight sees it too. One
        // clock read per request (a vDSO call, tens of nanoseconds).
        let micros = u64::try_from(self.0.born.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.0.idle_at.store(micros, Ordering::Relaxed);
        self.0.handling.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long each wait may last.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub head: Duration,
    pub keep_alive: Duration,
    pub send: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// For the rest of a request's head.
    Head,
    /// For the first byte of the next request.
    Idle,
    /// For nothing: a request is being handled.
    Handling,
}

/// A socket whose reads and writes fail with `TimedOut` past their deadline.
pub struct Deadlines<T> {
    io: T,
    phase: Arc<Phase>,
    timeouts: Timeouts,
    waiting: Waiting,
    /// Requests started as of the last look at the phase.
    seen: usize,
    read_deadline: Pin<Box<Sleep>>,
    /// Armed while a write is blocked.
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> Deadlines<T> {
    /// A new connection: its first request's head is due within the header timeout.
    pub fn new(io: T, phase: Arc<Phase>, timeouts: Timeouts) -> Self {
        Deadlines {
            io,
            phase,
            timeouts,
            waiting: Waiting::Head,
            seen: 0,
            read_deadline: Box::pin(tokio::time::sleep(timeouts.head)),
            write_deadline: None,
        }
    }

    fn wait_for(&mut self, waiting: Waiting, within: Duration) {
        self.waiting = waiting;
        self.read_deadline.as_mut().reset(Instant::now() + within);
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlines<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (started, handling) = this.phase.now();
        if handling {
            this.waiting = Waiting::Handling;
        } else if this.waiting == Waiting::Handling || started != this.seen {
            // A request was answered since the last look (possibly without this socket
            // being read meanwhile: its body came with its head): now idle.
            let keep_alive = this.timeouts.keep_alive;
            this.wait_for(Waiting::Idle, keep_alive);
        }
        this.seen = started;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.waiting == Waiting::Idle && buf.filled().len() > before {
                    // The next request has begun: its head is due soon.
                    let head = this.timeouts.head;
                    this.wait_for(Waiting::Head, head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.waiting {
                Waiting::Handling => Poll::Pending,
                waiting => match this.read_deadline.as_mut().poll(cx) {
                    Poll::Ready(()) if waiting == Waiting::Head => {
                        Poll::Ready(Err(timed_out("request head not received in time")))
                    }
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("keep-alive timeout"))),
                    Poll::Pending => Poll::Pending,
                },
            },
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> Deadlines<T> {
    /// Passes a write's result through, timing how long it stays blocked.
    fn track<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending => {
                let send = self.timeouts.send;
                let deadline = self
                    .write_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(send)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("the client does not read"))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.write_deadline = None;
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlines<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.track(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.track(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.track(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.track(cx, result)
    }
}

#[cfg(test)]
mod tests;
