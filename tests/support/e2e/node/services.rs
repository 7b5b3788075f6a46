//! What an install from `manifests/` needs of the node beyond running pods: Services
//! (kube-proxy in iptables mode, so that the API server reaches the webhook through
//! Service `ci-pod-webhook` and the webhook's pods reach the API server through Service
//! `kubernetes`), and the webhook's own image, the Dockerfile's final stage made from
//! local files (scripts/node/images.sh `webhook`).
//!
//! kube-proxy's configuration leaves the host alone, after ../shared/kube-e2e/node/
//! proxy-up.sh: no conntrack sysctls (`conntrack` all zero), no `route_localnet`
//! (`localhostNodePorts: false`, NodePorts on the primary address only). Its rules stay
//! after it exits: scripts/node/node-down.sh stops it by its pid file and runs
//! `kube-proxy --cleanup` (the binary named in node.env).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::super::pki::{self, Credentials};
use super::super::process;
use super::{Node, POD_CIDR, import_images, spawn};

/// The webhook's image as the node has it: the Dockerfile's final stage.
pub const WEBHOOK_IMAGE: &str = "localhost/e2e/ci-pod-webhook:e2e";

impl Node {
    /// Starts kube-proxy (once): afterwards ClusterIPs route, from the host (the API
    /// server calling a `service` webhook) and from pods.
    pub async fn services(&self) {
        self.kube_proxy
            .get_or_init(|| async {
                let started = Instant::now();
                let assets = super::super::assets_dir();
                let binary = super::super::asset(&assets, "kube-proxy");
                let (cert, key) = self.cp.pki.client_cert("system:kube-proxy", "e2e");
                let kubeconfig = self.state.join("kube-proxy.kubeconfig");
                let credentials = Credentials::ClientCert {
                    cert_pem: &cert,
                    key_pem: &key,
                };
                std::fs::write(
                    &kubeconfig,
                    pki::kubeconfig(&self.cp.server, self.cp.ca_pem(), &credentials),
                )
                .expect("write kube-proxy's kubeconfig");
                let (metrics, healthz) = (process::free_port(), process::free_port());
                let config = self.state.join("kube-proxy.yaml");
                std::fs::write(
                    &config,
                    kube_proxy_config(&self.name, &kubeconfig, metrics, healthz),
                )
                .expect("write kube-proxy's configuration");
                let mut command = Command::new(binary);
                command.arg(format!("--config={}", config.display()));
                let proxy = spawn("kube-proxy", command, &self.state, &self.watchdog);
                // Ready: healthy, and the rules of Service `kubernetes` are in place.
                let ready = proxy
                    .wait_until(Duration::from_secs(60), || async {
                        let healthy = process::http_get(healthz, "/healthz")
                            .await
                            .is_some_and(|(status, _)| status == 200);
                        let rules = Command::new("iptables")
                            .args(["-w", "5", "-t", "nat", "-S", "KUBE-SERVICES"])
                            .output()
                            .is_ok_and(|o| {
                                String::from_utf8_lossy(&o.stdout)
                                    .contains("default/kubernetes:https")
                            });
                        healthy && rules
                    })
                    .await;
                if let Err(error) = ready {
                    self.keep_logs();
                    panic!("{error}");
                }
                eprintln!(
                    "kube-e2e: kube-proxy's rules in place after {:.1?}",
                    started.elapsed()
                );
                proxy
            })
            .await;
    }

    /// Builds and imports the webhook's image (once): `ci-pod-webhook` of this build,
    /// its debug info stripped, on a stand-in for distroless/cc (scripts/node/images.sh).
    /// Returns the archive, whose configuration the tests compare with the Dockerfile.
    pub async fn webhook_image(&self) -> PathBuf {
        let images = self.state.join("images");
        let archive = images.join("webhook.tar");
        self.images
            .get_or_init(|| async {
                let output = Command::new(super::super::repo_file("scripts/node/images.sh"))
                    .arg(&images)
                    .arg("webhook")
                    .env("WEBHOOK_BINARY", env!("CARGO_BIN_EXE_ci-pod-webhook"))
                    .output()
                    .expect("run scripts/node/images.sh");
                assert!(
                    output.status.success(),
                    "scripts/node/images.sh webhook: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                import_images(&self.containerd_socket, &images, &["webhook"]);
            })
            .await;
        archive
    }
}

fn kube_proxy_config(
    node: &str,
    kubeconfig: &std::path::Path,
    metrics: u16,
    healthz: u16,
) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {node}
clusterCIDR: {POD_CIDR}
detectLocalMode: ClusterCIDR
metricsBindAddress: 127.0.0.1:{metrics}
healthzBindAddress: 127.0.0.1:{healthz}
nodePortAddresses: [primary]
oomScoreAdj: 0
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  minSyncPeriod: 1s
  syncPeriod: 30s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
  tcpBeLiberal: false
logging:
  verbosity: 2
"#,
        kubeconfig = kubeconfig.display()
    )
}
