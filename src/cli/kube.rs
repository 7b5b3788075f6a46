//! How the commands that read a cluster (`audit`, `doctor`) reach it: the flags kubectl
//! has, and a client made as kubectl makes one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// `--kubeconfig` and `--context`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl KubeArgs {
    /// A client as kubectl would make it: `--kubeconfig`, else $KUBECONFIG or
    /// ~/.kube/config, else the in-cluster service account; `--context` picks the
    /// context. `timeout` bounds connecting and each read, so that an unreachable API
    /// server fails the command instead of hanging it.
    pub async fn connect(&self, timeout: Option<Duration>) -> anyhow::Result<kube::Client> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let mut config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("cannot use --kubeconfig {}", path.display()))?
            }
            (None, Some(context)) => kube::Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("cannot use --context {context}"))?,
            (None, None) => kube::Config::infer().await.context(
                "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not inside a cluster: pass --kubeconfig FILE",
            )?,
        };
        if let Some(timeout) = timeout {
            config.connect_timeout = Some(timeout);
            config.read_timeout = Some(timeout);
        }
        kube::Client::try_from(config).context("cannot build a Kubernetes client")
    }
}
