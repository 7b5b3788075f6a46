//! The policy file exactly as written: serde structs that reject unknown keys and keep
//! the location of every value that a later check may need to point at.
//!
//! Nothing here decides anything; `validate.rs` turns a [`RawPolicy`] into a
//! [`super::Policy`] in one step.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::quantity::Quantity;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPolicy {
    pub prefix: Option<S<String>>,
    pub default_class: S<String>,
    pub job_pods: Option<RawJobPods>,
    pub docker: Option<RawDocker>,
    pub overrides: Option<RawOverrides>,
    pub enforcement: Option<RawEnforcement>,
    pub ci_nodes: Option<RawScheduling>,
    pub classes: S<Ordered<S<String>, RawClass>>,
    pub gpu_workloads: Option<S<super::gpu_workloads::RawGpuWorkloads>>,
    pub limits_env: Option<super::limits_env::RawLimitsEnv>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawJobPods {
    pub containers: Option<S<Vec<String>>>,
    pub or_label: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDocker {
    pub mode: Option<S<RawDockerMode>>,
    pub containers: Option<S<Vec<String>>>,
    pub socket_path: Option<S<String>>,
    pub mount: Option<S<RawSocketMount>>,
    pub volume_name: Option<S<String>>,
    pub tcp: Option<RawDockerTcp>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawDockerMode {
    Socket,
    Tcp,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSocketMount {
    Directory,
    File,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDockerTcp {
    pub port: Option<S<u16>>,
    pub tls: Option<RawDockerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDockerTls {
    pub secret_name: S<String>,
    pub mount_path: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOverrides {
    pub on_exceed: Option<RawOnExceed>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawOnExceed {
    Clamp,
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawEnforcement {
    Enforce,
    Warn,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawScheduling {
    #[serde(default)]
    pub node_selector: Ordered<S<String>, S<String>>,
    #[serde(default)]
    pub tolerations: Vec<S<RawToleration>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawToleration {
    pub key: Option<String>,
    pub operator: Option<String>,
    pub value: Option<String>,
    pub effect: Option<String>,
    pub toleration_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClass {
    pub description: Option<String>,
    pub enforcement: Option<RawEnforcement>,
    #[serde(rename = "match", default)]
    pub match_rules: RawMatchBlocks,
    pub build: Option<RawRoleResources>,
    pub helper: Option<RawRoleResources>,
    pub services: Option<RawRoleResources>,
    /// Required, with `cpu` and `memory` keys: `null` means knowingly unlimited.
    pub max: Option<S<RawLimitList>>,
    #[serde(default)]
    pub node_selector: Ordered<S<String>, S<String>>,
    #[serde(default)]
    pub tolerations: Vec<S<RawToleration>>,
    pub gpu: Option<S<RawGpu>>,
}

/// `match:` as one block of rules, or a list of blocks (any block may match).
#[derive(Debug)]
pub enum RawMatchBlocks {
    One(RawMatch),
    Many(Vec<S<RawMatch>>),
}

impl Default for RawMatchBlocks {
    fn default() -> Self {
        RawMatchBlocks::One(RawMatch::default())
    }
}

impl<'de> Deserialize<'de> for RawMatchBlocks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BlocksVisitor;

        impl<'de> Visitor<'de> for BlocksVisitor {
            type Value = RawMatchBlocks;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a block of match rules, or a list of such blocks")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawMatch::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawMatchBlocks::One)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::new();
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(RawMatchBlocks::Many(blocks))
            }
        }

        d.deserialize_any(BlocksVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMatch {
    #[serde(default)]
    pub runner_names: Vec<S<String>>,
    #[serde(default)]
    pub runner_tokens: Vec<S<String>>,
    #[serde(default)]
    pub service_accounts: Vec<S<String>>,
    #[serde(default)]
    pub namespaces: Vec<S<String>>,
    #[serde(default)]
    pub pod_labels: Ordered<S<String>, S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRoleResources {
    pub requests: Option<RawResourceList>,
    pub limits: Option<RawLimitList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResourceList {
    pub cpu: Option<S<Quantity>>,
    pub memory: Option<S<Quantity>>,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<S<Quantity>>,
}

/// Limits may be `null`, which means "this class wants no limit" and is not the same
/// as leaving the key out ("leave whatever the pod has").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitList {
    #[serde(default)]
    pub cpu: Present<S<Option<Quantity>>>,
    #[serde(default)]
    pub memory: Present<S<Option<Quantity>>>,
    #[serde(rename = "ephemeral-storage", default)]
    pub ephemeral_storage: Present<S<Option<Quantity>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGpu {
    pub resource: Option<S<String>>,
    pub count: Option<S<i64>>,
    pub max: Option<S<i64>>,
    pub runtime_class_name: Option<S<String>>,
    #[serde(default)]
    pub node_selector: Ordered<S<String>, S<String>>,
    #[serde(default)]
    pub tolerations: Vec<S<RawToleration>>,
}

/// A field that distinguishes "key absent" from "key present with value null":
/// `Option<Option<T>>` cannot, because serde maps both to the outer `None`.
#[derive(Debug)]
pub struct Present<T>(pub Option<T>);

impl<T> Default for Present<T> {
    fn default() -> Self {
        Present(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Present<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|v| Present(Some(v)))
    }
}

/// A mapping whose entries keep their order in the file: classes are tried in the
/// order they are written, so "first match wins" must mean the first one written.
#[derive(Debug)]
pub struct Ordered<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<K, V> {
            type Value = Ordered<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }

        d.deserialize_map(OrderedVisitor(PhantomData))
    }
}
