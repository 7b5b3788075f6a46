//! Does the webhook know the API server's addresses? `--trusted-peers` (or its
//! environment variable) in the webhook Deployment: without it, connections from many
//! addresses can hold every slot and the API server's reviews time out (docs/network.md).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;

use super::install::GROUP;
use super::report::Check;
use crate::trusted_peers::TrustedPeers;

pub const FLAG: &str = "--trusted-peers";
pub const ENV: &str = "CI_POD_WEBHOOK_TRUSTED_PEERS";
/// The container `manifests/base` runs the server in.
const CONTAINER: &str = "webhook";
const FIX: &str = "set CI_POD_WEBHOOK_TRUSTED_PEERS in the Deployment to the API server's source addresses, from your overlay (docs/network.md, \"Trusted peers\")";

/// Where the Deployment sets the trusted peers, as far as the object shows.
#[derive(Debug, PartialEq, Eq)]
enum Setting<'a> {
    /// A command-line argument (it wins over the environment).
    Argument(&'a str),
    /// The environment variable's literal value.
    Env(&'a str),
    /// The environment variable, from a ConfigMap, Secret or field.
    EnvFrom,
    /// Nowhere to be seen; `envFrom` sources may still set it.
    Unseen { env_from: bool },
}

/// The check of the webhook container's trusted peers.
pub fn trusted_peers(where_: &str, deployment: &Deployment) -> Check {
    let containers = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let Some(container) = containers
        .iter()
        .find(|c| c.name == CONTAINER)
        .or(containers.first())
    else {
        return Check::warning(GROUP, format!("Deployment {where_}: no container"));
    };
    let (text, from) = match setting(container) {
        Setting::Argument(text) => (text, format!("{FLAG} argument")),
        Setting::Env(text) => (text, ENV.to_string()),
        Setting::EnvFrom => {
            return Check::ok(
                GROUP,
                format!(
                    "Deployment {where_}: {ENV} is set from a reference (its value is not checked here)"
                ),
            );
        }
        Setting::Unseen { env_from } => {
            let unless = if env_from {
                " (unless an envFrom source sets it)"
            } else {
                ""
            };
            return missing(where_, &format!("no {FLAG} or {ENV}{unless}"));
        }
    };
    match text.parse::<TrustedPeers>() {
        Err(error) => Check::failure(
            GROUP,
            format!("Deployment {where_}: {from} {text:?} is invalid: {error}"),
        )
        .hint("the webhook refuses to start with it: no review is answered")
        .fix(FIX),
        Ok(peers) if peers.is_empty() => missing(where_, &format!("{from} is empty")),
        Ok(peers) => Check::ok(
            GROUP,
            format!("Deployment {where_}: trusted peers (the API server) {peers}"),
        ),
    }
}

fn missing(where_: &str, what: &str) -> Check {
    Check::warning(GROUP, format!("Deployment {where_}: {what}: no trusted peers"))
        .hint("the API server's connections are treated like anyone's: connections from many addresses can hold every slot, and its reviews then time out (under failurePolicy Ignore, pods are admitted without their class)")
        .fix(FIX)
}

fn setting(container: &Container) -> Setting<'_> {
    let words = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten());
    let mut after_flag = false;
    let mut argument = None;
    for word in words {
        if after_flag {
            argument = Some(word.as_str());
            after_flag = false;
        } else if word == FLAG {
            after_flag = true;
        } else if let Some(value) = word.strip_prefix(FLAG).and_then(|v| v.strip_prefix('=')) {
            argument = Some(value);
        }
    }
    if let Some(text) = argument {
        return Setting::Argument(text);
    }
    let env = container.env.iter().flatten().rev().find(|e| e.name == ENV);
    match env {
        Some(var) if var.value_from.is_some() => Setting::EnvFrom,
        Some(var) => Setting::Env(var.value.as_deref().unwrap_or("")),
        None => Setting::Unseen {
            env_from: container.env_from.as_ref().is_some_and(|e| !e.is_empty()),
        },
    }
}

#[cfg(test)]
mod tests;
