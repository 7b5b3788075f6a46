//! The policy file on disk. The core parses policy text ([`Policy::parse`]) and never
//! touches the file system; reading the file is the shell's job.

use std::path::Path;

use ci_pod_webhook_core::policy::{Policy, PolicyError};

/// Reads and validates the policy file at `path`; errors name the file.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Policy::parse(&text, &path.display().to_string())
}
