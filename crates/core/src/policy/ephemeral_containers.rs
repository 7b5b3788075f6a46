//! `ephemeralContainers`: what a container added to a running job pod
//! (`pods/ephemeralcontainers`, `kubectl debug`) may be. Such a container shares the
//! pod's node, volumes and, with `targetContainerName`, a container's processes; a
//! privileged one with the NVIDIA toolkit's variables and the pod's Docker socket is the
//! node's. Paired with `ephemeral_containers` in `mutate/`.

use serde::Deserialize;

/// What the webhook lets through `pods/ephemeralcontainers` for a job pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EphemeralContainers {
    /// Every new ephemeral container is refused.
    Deny,
    /// The default: a new ephemeral container may not be privileged, add capabilities,
    /// allow privilege escalation or leave its confinement otherwise (procMount,
    /// seccomp, AppArmor, SELinux type, Windows host process), carry the NVIDIA
    /// toolkit's variables (or an `envFrom` that may), nor mount the pod's Docker socket
    /// or any hostPath volume.
    #[default]
    Restricted,
    /// Not reviewed: any ephemeral container (the webhook's checks are off).
    Allow,
}

impl EphemeralContainers {
    pub fn as_str(self) -> &'static str {
        match self {
            EphemeralContainers::Deny => "deny",
            EphemeralContainers::Restricted => "restricted",
            EphemeralContainers::Allow => "allow",
        }
    }
}
