//! The webhook port's connections: accept, TLS handshake, HTTP/1.1 or HTTP/2, drain.
//!
//! Bounded everywhere a slow or hostile client could hold resources: open connections are
//! capped (without `--trusted-peers` by a semaphore: at the cap, new ones wait in the
//! kernel's backlog; with them, the accept loop never stops, so that the API server's
//! connection is never queued behind a flood's, and [`super::peers`] refuses untrusted
//! addresses at the cap or closes an idle one of theirs to make room for a trusted one);
//! each source address may hold only so many of them, and have only so many TLS
//! handshakes in progress ([`super::peers`]: past either bound a connection is closed as
//! soon as it is accepted); a connection must send its first byte within the first-byte timeout and
//! finish the TLS handshake within the handshake timeout (both from the accept); the
//! request headers must arrive in time, and each request has a deadline (in the router). On HTTP/1.1 the socket carries the header, keep-alive and
//! send deadlines ([`super::deadlines`]), not hyper's header-read timer, which would also
//! close a keep-alive connection idle for 2 s under the API server's feet. An HTTP/2
//! connection must start a request within the header timeout, and is closed once idle
//! for the keep-alive timeout ([`until_idle`]).
//!
//! Draining: stop accepting, ask every connection to finish gracefully (HTTP/1 answers
//! its in-flight request with `Connection: close` and an idle one closes at once; HTTP/2
//! sends GOAWAY), wait up to the drain timeout, then drop whatever is left.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::Router;
use axum::http::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::Limits;
use super::deadlines::{Deadlines, Phase, Timeouts};
use super::peers::{Admitted, PeerLimits, Peers, Priority, Ticket};
use crate::metrics::{GaugeGuard, Metrics, Refused};
use crate::trusted_peers::TrustedPeers;

/// Requests in flight on one HTTP/2 connection (hyper's default is 200). A connection
/// counts once against the per-address bound however many streams it carries, so this
/// bounds the requests one address can hold open: 32 × `--max-connections-per-address`.
/// A Go client (the API server) opens another connection when it needs more.
pub(super) const MAX_HTTP2_STREAMS: u32 = 32;

/// The webhook's routes for connections from untrusted and trusted addresses (their
/// request bodies draw on different shares of the body budget).
pub(super) struct Apps {
    pub untrusted: Router,
    pub trusted: Router,
}

/// Everything a connection task needs, shared by all of them.
struct Shared {
    acceptor: TlsAcceptor,
    /// For connections that negotiated `h2` by ALPN.
    http2: auto::Builder<TokioExecutor>,
    /// For every other connection (ALPN `http/1.1`, or none).
    http1: auto::Builder<TokioExecutor>,
    apps: Apps,
    metrics: Metrics,
    first_byte_timeout: Duration,
    handshake_timeout: Duration,
    deadlines: Timeouts,
}

/// Serves the webhook port until `draining` is cancelled, then drains.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    apps: Apps,
    limits: &Limits,
    trusted: &TrustedPeers,
    metrics: Metrics,
    draining: CancellationToken,
    drain_timeout: Duration,
) {
    let mut http1 = auto::Builder::new(TokioExecutor::new()).http1_only();
    // The socket's deadlines replace hyper's header timer (see the module doc).
    http1
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    let mut http2 = auto::Builder::new(TokioExecutor::new()).http2_only();
    http2
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(MAX_HTTP2_STREAMS);
    let shared = Arc::new(Shared {
        acceptor,
        http1,
        http2,
        apps,
        metrics,
        first_byte_timeout: limits.first_byte_timeout,
        handshake_timeout: limits.handshake_timeout,
        deadlines: Timeouts {
            head: limits.header_read_timeout,
            keep_alive: limits.keep_alive_timeout,
            send: limits.send_timeout,
        },
    });
    let peers = Peers::new(
        PeerLimits {
            connections: limits.max_connections_per_address,
            handshakes: limits.max_handshakes_per_address,
        },
        Some(Priority {
            trusted: trusted.clone(),
            connections: limits.max_connections,
            untrusted_handshakes: limits.max_untrusted_handshakes,
        }),
    );
    // Without trusted peers, the total is bounded by not accepting at it.
    let permits = (!peers.prioritised()).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let (permit, tcp, peer) = tokio::select! {
            biased;
            () = draining.cancelled() => break,
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = ended {
                    tracing::error!(%error, "a connection task failed");
                }
                continue;
            }
            accepted = accept(&listener, permits.as_ref()) => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Refused here, in the accept loop, without a task: a flood of refused
        // connections costs an accept and a close each.
        let ticket = match peers.admit(peer.ip()) {
            Ok(admitted) => admitted_now(&peers, &shared.metrics, peer, admitted),
            Err(refused) => {
                shared.metrics.refused(refused).inc();
                if let Some(unlogged) = peers.warn_now() {
                    tracing::warn!(
                        %peer,
                        reason = refused.as_str(),
                        refused_before_unlogged = unlogged,
                        "refused a webhook connection: {}",
                        advice(refused)
                    );
                }
                // A reset, not a FIN: no TIME_WAIT left behind per refused connection.
                let _ = tcp.set_zero_linger();
                continue;
            }
        };
        let shared = shared.clone();
        let watcher = graceful.watcher();
        connections.spawn(connection(shared, tcp, peer, watcher, (permit, ticket)));
    }
    drop(listener);

    let open = connections.len();
    tracing::info!(open, ?drain_timeout, "draining webhook connections");
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "drain timeout reached; closing the remaining connections"
        );
    }
    connections.shutdown().await;
}

/// Logs and counts what admitting a connection did: a new address (how an admin finds
/// the API server's), an idle connection evicted to make room for it.
fn admitted_now(peers: &Peers, metrics: &Metrics, peer: SocketAddr, admitted: Admitted) -> Ticket {
    let Admitted {
        ticket,
        evicted,
        new_address,
    } = admitted;
    let trusted = ticket.trusted();
    if new_address && let Some(unlogged) = peers.log_new_address_now() {
        tracing::info!(
            peer = %peer.ip(),
            trusted,
            new_addresses_before_unlogged = unlogged,
            "webhook connection from a new source address"
        );
    }
    if let Some(evicted) = evicted {
        metrics.refused(Refused::EvictedIdle).inc();
        if let Some(unlogged) = peers.warn_now() {
            tracing::warn!(
                %peer,
                %evicted,
                reason = Refused::EvictedIdle.as_str(),
                refused_before_unlogged = unlogged,
                "closed an idle connection from an untrusted address to make room for a \
                 trusted peer: {}",
                advice(Refused::EvictedIdle)
            );
        }
    }
    ticket
}

/// What a refusal means for the admin reading the log.
fn advice(refused: Refused) -> String {
    match refused {
        Refused::AddressConnections | Refused::AddressHandshakes => format!(
            "its address is at {}; if this is the API server, add it to --trusted-peers or \
             raise the bound (docs/network.md)",
            refused.flag()
        ),
        Refused::Connections | Refused::UntrustedHandshakes => format!(
            "untrusted addresses are at {}; if this is the API server, add it to \
             --trusted-peers (docs/network.md)",
            refused.flag()
        ),
        Refused::EvictedIdle => format!(
            "{} connections were open; untrusted addresses hold them (docs/network.md)",
            refused.flag()
        ),
    }
}

/// Runs an HTTP/2 connection until it ends, or `None` once it has sat idle too long: no
/// request within the header timeout of the handshake, then none started or in flight
/// for the keep-alive timeout. hyper's PINGs find dead peers, not idle live ones, and
/// a silent client would otherwise hold a connection slot for good.
async fn until_idle<F: Future>(conn: F, phase: &Phase, timeouts: Timeouts) -> Option<F::Output> {
    let mut conn = std::pin::pin!(conn);
    let (mut seen, mut wait) = (0, timeouts.head);
    loop {
        if let Ok(ended) = tokio::time::timeout(wait, conn.as_mut()).await {
            return Some(ended);
        }
        let (started, handling) = phase.now();
        if started == seen && !handling {
            return None;
        }
        (seen, wait) = (started, timeouts.keep_alive);
    }
}

/// The next connection; with `permits`, only once one is free.
async fn accept(
    listener: &TcpListener,
    permits: Option<&Arc<Semaphore>>,
) -> io::Result<(Option<OwnedSemaphorePermit>, TcpStream, SocketAddr)> {
    let permit = match permits {
        // The semaphore is never closed, so this cannot fail; map it anyway.
        Some(permits) => Some(
            permits
                .clone()
                .acquire_owned()
                .await
                .map_err(io::Error::other)?,
        ),
        None => None,
    };
    let (tcp, peer) = listener.accept().await?;
    Ok((permit, tcp, peer))
}

async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
    (_permit, mut ticket): (Option<OwnedSemaphorePermit>, Ticket),
) {
    let metrics = &shared.metrics;
    metrics.connections.inc();
    let _open = GaugeGuard::new(&metrics.open_connections);
    let _trusted = ticket
        .trusted()
        .then(|| GaugeGuard::new(&metrics.trusted_connections));
    let accepted = tokio::time::Instant::now();
    let handshake_deadline = accepted + shared.handshake_timeout;
    let first_byte_deadline = handshake_deadline.min(accepted + shared.first_byte_timeout);
    // Reviews are small request/response exchanges: send each answer at once.
    let _ = tcp.set_nodelay(true);
    // A TLS client speaks first, at once; a silent one is let go quickly, before the
    // handshake timeout.
    match tokio::time::timeout_at(first_byte_deadline, tcp.peek(&mut [0u8; 1])).await {
        Ok(Ok(1..)) => {}
        Ok(Ok(0)) => {
            metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "closed by the client before the TLS handshake");
            return;
        }
        Ok(Err(error)) => {
            metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, %error, "connection failed before the TLS handshake");
            return;
        }
        Err(_elapsed) => {
            metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "nothing received within the first-byte timeout");
            return;
        }
    }
    let tls = match tokio::time::timeout_at(handshake_deadline, shared.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_elapsed) => {
            metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    ticket.established();
    // Each request counts as handled from its head to its answer (and the connection as
    // idle between them, for `peers` to close the idlest).
    let phase = ticket.phase();
    let track = {
        let phase = phase.clone();
        move |answer: RouteFuture<Infallible>| {
            let handling = phase.start();
            async move {
                let response = answer.await;
                drop(handling);
                response
            }
        }
    };
    let app = if ticket.trusted() {
        &shared.apps.trusted
    } else {
        &shared.apps.untrusted
    };
    let app = <Router as ServiceExt<Request<Incoming>>>::map_future::<_, _, Response, _>(
        app.clone(),
        track,
    );
    let service = TowerToHyperService::new(app);
    let serving = async {
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            let conn = shared.http2.serve_connection(TokioIo::new(tls), service);
            let ended = until_idle(watcher.watch(conn), &phase, shared.deadlines).await;
            if ended.is_none() {
                tracing::debug!(%peer, "HTTP/2 connection idle past its deadline; closed");
            }
            ended
        } else {
            let io = Deadlines::new(tls, phase.clone(), shared.deadlines);
            let conn = shared.http1.serve_connection(TokioIo::new(io), service);
            Some(watcher.watch(conn).await)
        }
    };
    let ended = tokio::select! {
        ended = serving => ended,
        // Dropping the connection closes it: it was idle, no answer is cut short.
        () = ticket.evicted() => {
            tracing::debug!(%peer, "idle connection closed to make room for a trusted peer");
            None
        }
    };
    if let Some(Err(error)) = ended {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
