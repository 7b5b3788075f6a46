//! SIGTERM and SIGINT in two stages: the first starts a graceful drain, the second
//! means "stop now" (someone is waiting on a stuck drain, or pressed Ctrl-C twice).

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

/// Two futures: the first resolves on the first signal, the second on the next one.
/// Must be called inside a Tokio runtime.
pub fn two_stage() -> io::Result<(
    impl Future<Output = ()> + Send,
    impl Future<Output = ()> + Send,
)> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (first_tx, first_rx) = oneshot::channel();
    let (second_tx, second_rx) = oneshot::channel();
    tokio::spawn(async move {
        let name = next(&mut term, &mut int).await;
        tracing::info!(signal = name, "received; a second signal exits at once");
        let _ = first_tx.send(());
        let name = next(&mut term, &mut int).await;
        tracing::warn!(signal = name, "received again; exiting without draining");
        let _ = second_tx.send(());
    });
    Ok((resolved(first_rx), resolved(second_rx)))
}

async fn next(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Resolves when `rx` gets its value; never, if the sender went away without one.
async fn resolved(rx: oneshot::Receiver<()>) {
    if rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}
