//! The `serve` command: logs, runtime, signals, the ports, development certificates,
//! the view of the cluster, the server. The ports come before the certificates, so a
//! `serve` that cannot listen writes nothing.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use super::config::{LogFormat, ServeArgs};
use super::logs::{self, LogGuard};
use super::{Listeners, Server, signal};
use crate::certs;
use crate::cluster::Cluster;

/// Exit code after a second signal cut the drain short (128 + SIGINT, as shells do).
const ABORTED: u8 = 130;

/// Runs the server until a signal; returns once it has drained.
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let _logs = init_logging(&args.log_level, args.log_format)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting ci-pod-webhook"
    );

    // One worker per available core (cgroup CPU limits included), unless
    // TOKIO_WORKER_THREADS says otherwise (the Deployment sets it: without a CPU limit a
    // CI node would otherwise get dozens of workers).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async {
        // First, so that a signal during start-up also ends in an orderly way.
        let (first, second) = signal::two_stage().context("cannot install signal handlers")?;
        // The ports before the certificate: a second `serve` on ports in use must fail
        // before it overwrites the running one's development certificate.
        let listeners = Listeners::bind(args.listen, args.admin_listen).await?;
        let (tls_cert, tls_key, dev_ca, _cert_dir_lock) = certificate(args)?;
        let cluster = Cluster::connect(args.kube).await?;
        let settings = args.settings(tls_cert, tls_key, cluster.clone());
        let server = Server::with_listeners(settings, listeners).await?;
        let active = server.policy();
        tracing::info!(
            webhook = %server.webhook_addr(),
            admin = %server.admin_addr(),
            policy = %active.policy.origin,
            policy_hash = %active.policy.hash,
            workers = tokio::runtime::Handle::current().metrics().num_workers(),
            "listening"
        );
        if let Some(ca) = &dev_ca {
            tracing::info!(
                "try: curl --cacert {} -H 'content-type: application/json' \
                 --data-binary @tests/fixtures/job-pod-review.json https://localhost:{}/mutate",
                ca.display(),
                server.webhook_addr().port()
            );
        }
        let code = tokio::select! {
            () = server.run(first) => ExitCode::SUCCESS,
            () = second => ExitCode::from(ABORTED),
        };
        // The watches stop once the server has drained.
        cluster.stop();
        Ok::<_, anyhow::Error>(code)
    })?;
    // Connections a second signal cut short are not waited for.
    runtime.shutdown_background();
    Ok(code)
}

/// The serving certificate's files, and, for a development certificate (no TLS flags:
/// one is made in --cert-dir), the CA file a client needs and the directory's lock.
type Certificate = (
    PathBuf,
    PathBuf,
    Option<PathBuf>,
    Option<certs::DevCertLock>,
);

fn certificate(args: &ServeArgs) -> anyhow::Result<Certificate> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok((cert.clone(), key.clone(), None, None));
    }
    let dir = args.cert_dir();
    let lock = certs::write_dev_certs(&dir).context("cannot write the development certificate")?;
    let ca = dir.join(certs::CA_CERT);
    tracing::info!(
        cert_dir = %dir.display(),
        ca = %ca.display(),
        "no --tls-cert: generated a development certificate for localhost and 127.0.0.1"
    );
    Ok((
        dir.join(certs::TLS_CERT),
        dir.join(certs::TLS_KEY),
        Some(ca),
        Some(lock),
    ))
}

/// Logs to stdout through a background writer (`logs`), so that a slow log pipe never
/// blocks a review; the guard writes what is left when `serve` returns.
fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("--log-level {filter:?}"))?;
    let (writer, guard) =
        logs::spawn(std::io::stdout()).context("cannot start the log writer thread")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guard)
}
