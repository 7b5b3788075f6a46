//! A read-only, borrowed view of the parts of an AdmissionRequest and its Pod that the
//! core reads. Everything else in the request is skipped, never modelled: the answer
//! is a list of targeted patch operations, so fields this view does not know are kept
//! by construction (and parsing stays cheap on a 20 KB job pod).
//!
//! Every Kubernetes object in the view must be a JSON *object*: serde's derived struct
//! impls would also read a JSON array as the fields in order, and a patch built for such
//! a "pod" (say `"spec": [[{"name": "build"}, …]]`) would not apply to it. The API
//! server never sends one; a hand-made request that does is not a valid Pod (HTTP 400).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// The `request` of an AdmissionReview.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub kind: GroupVersionKind<'a>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub name: Option<Cow<'a, str>>,
    /// Authoritative namespace of the request (not the object's metadata).
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub operation: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub user_info: UserInfo<'a>,
    /// The object, kept raw until we know it is a Pod: other kinds are never parsed.
    #[serde(borrow, default)]
    pub object: Option<&'a serde_json::value::RawValue>,
    /// The object before an UPDATE (`null` for a CREATE), kept raw: only the reviews of
    /// pod subresources (`resize`, `ephemeralcontainers`) read it.
    #[serde(borrow, default)]
    pub old_object: Option<&'a serde_json::value::RawValue>,
    /// The object already read as a Pod, when `admission::parse_with` could tell in the
    /// same pass that it would be needed; then `object` is `None`.
    #[serde(skip)]
    pub pod: Option<Pod<'a>>,
}

impl<'a> AdmissionRequest<'a> {
    /// A CREATE of `pod` in `namespace` by no particular user, as if the pod were being
    /// created now: how `audit` and the live gauge put a stored pod through the core.
    pub fn create(namespace: &'a str, pod: Pod<'a>) -> AdmissionRequest<'a> {
        AdmissionRequest {
            uid: Cow::Borrowed("stored-pod"),
            kind: GroupVersionKind {
                group: Cow::Borrowed(""),
                version: Cow::Borrowed("v1"),
                kind: Cow::Borrowed("Pod"),
            },
            sub_resource: None,
            name: pod.meta().name.clone(),
            namespace: Some(Cow::Borrowed(namespace)),
            operation: Cow::Borrowed("CREATE"),
            user_info: UserInfo::default(),
            object: None,
            old_object: None,
            pod: Some(pod),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct GroupVersionKind<'a> {
    #[serde(borrow, default)]
    pub group: Cow<'a, str>,
    #[serde(borrow, default)]
    pub version: Cow<'a, str>,
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(borrow, default)]
    pub username: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Pod<'a> {
    /// `None` when absent or `null`: a patch must then create it.
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub metadata: Option<ObjectMeta<'a>>,
    /// `None` when absent or `null`: no containers, so never a job pod.
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub spec: Option<PodSpec<'a>>,
}

static NO_METADATA: ObjectMeta<'static> = ObjectMeta {
    name: None,
    generate_name: None,
    labels: None,
    annotations: None,
};

static NO_SPEC: PodSpec<'static> = PodSpec {
    containers: None,
    init_containers: None,
    volumes: None,
    node_selector: None,
    tolerations: None,
    runtime_class_name: None,
    resources: None,
    security_context: None,
    ephemeral_containers: None,
};

impl<'a> Pod<'a> {
    /// The metadata, or an empty one.
    pub fn meta(&self) -> &ObjectMeta<'a> {
        self.metadata.as_ref().unwrap_or(&NO_METADATA)
    }

    /// The spec, or an empty one.
    pub fn spec(&self) -> &PodSpec<'a> {
        self.spec.as_ref().unwrap_or(&NO_SPEC)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub generate_name: Option<Cow<'a, str>>,
    /// `None` when absent or `null`: a patch must then create the map.
    #[serde(borrow, default)]
    pub labels: Option<StrMap<'a>>,
    #[serde(borrow, default)]
    pub annotations: Option<StrMap<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec<'a> {
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub init_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub volumes: Option<Vec<Volume<'a>>>,
    #[serde(borrow, default)]
    pub node_selector: Option<StrMap<'a>>,
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub tolerations: Option<Vec<Toleration<'a>>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub runtime_class_name: Option<Cow<'a, str>>,
    /// Pod-level requests and limits (Kubernetes 1.32+, GitLab Runner 18.10+).
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub resources: Option<Resources<'a>>,
    /// `None` when absent or `null`: a patch must then create it.
    #[serde(default, deserialize_with = "object_opt")]
    pub security_context: Option<PodSecurityContext>,
    /// Added after creation through `pods/ephemeralcontainers` (`kubectl debug`); never
    /// on a CREATE.
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub ephemeral_containers: Option<Vec<EphemeralContainer<'a>>>,
}

/// The pod's security context, reduced to the groups every container's processes get.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    /// `None` when absent or `null`.
    #[serde(default)]
    pub supplemental_groups: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub env: Option<Env<'a>>,
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub env_from: Option<Vec<EnvFromSource<'a>>>,
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub volume_mounts: Option<Vec<VolumeMount<'a>>>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub resources: Option<Resources<'a>>,
    /// `Always` on an init container makes it a sidecar, running beside the others.
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub restart_policy: Option<Cow<'a, str>>,
}

/// An ephemeral container, reduced to what can take it past its pod's confinement:
/// its security context, env and mounts (Kubernetes refuses `resources` on one).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralContainer<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub env: Option<Env<'a>>,
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub env_from: Option<Vec<EnvFromSource<'a>>>,
    #[serde(borrow, default, deserialize_with = "objects_opt")]
    pub volume_mounts: Option<Vec<VolumeMount<'a>>>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub security_context: Option<SecurityContext<'a>>,
}

/// A container's `securityContext`: the fields that loosen its confinement.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext<'a> {
    #[serde(default)]
    pub privileged: Option<bool>,
    #[serde(default)]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub capabilities: Option<Capabilities<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub proc_mount: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub seccomp_profile: Option<ProfileType<'a>>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub app_armor_profile: Option<ProfileType<'a>>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub se_linux_options: Option<ProfileType<'a>>,
    #[serde(default, deserialize_with = "object_opt")]
    pub windows_options: Option<WindowsOptions>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Capabilities<'a> {
    #[serde(borrow, default)]
    pub add: Option<Vec<Borrowed<'a>>>,
}

/// The `type` of a seccomp or AppArmor profile, or of SELinux options.
#[derive(Debug, Default, Deserialize)]
pub struct ProfileType<'a> {
    #[serde(borrow, default, rename = "type", deserialize_with = "borrowed_opt")]
    pub kind: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsOptions {
    #[serde(default)]
    pub host_process: Option<bool>,
}

/// A container's env, reduced to what the core reads: the names set (env is a set keyed
/// by name), and whether each comes from the node's IP. Values are skipped: a CI job
/// container carries a hundred variables, and copying them would be most of the cost of
/// reading a pod; the names are borrowed from the request.
#[derive(Debug, Default)]
pub struct Env<'a> {
    /// (name, defined as `valueFrom.fieldRef.fieldPath: status.hostIP`), in order.
    vars: Vec<(Cow<'a, str>, bool)>,
    /// The variables that steer the NVIDIA container toolkit (every `NVIDIA_*`), in
    /// list order.
    pub nvidia: Vec<NvidiaVar>,
}

/// One entry of a container's env that the NVIDIA container toolkit reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvidiaVar {
    /// Position in the container's `env` list.
    pub index: usize,
    pub name: String,
    /// The literal value; `None` for `valueFrom` (unknown at admission).
    pub value: Option<String>,
}

/// The prefix of the NVIDIA container toolkit's variables. It reads many, and more
/// with each release (`NVIDIA_VISIBLE_DEVICES`, `NVIDIA_MIG_CONFIG_DEVICES`,
/// `NVIDIA_IMEX_CHANNELS`, `NVIDIA_GDS`, `NVIDIA_MOFED`, `NVIDIA_DISABLE_REQUIRE`, …), so
/// every name under it counts; names are case-sensitive, as the toolkit reads them.
pub const NVIDIA_ENV_PREFIX: &str = "NVIDIA_";

pub const DOCKER_HOST: &str = "DOCKER_HOST";
pub const NODE_IP: &str = "NODE_IP";
pub const DOCKER_TLS_VERIFY: &str = "DOCKER_TLS_VERIFY";
pub const DOCKER_CERT_PATH: &str = "DOCKER_CERT_PATH";
/// The downward API field of the node's IP.
pub const HOST_IP_FIELD: &str = "status.hostIP";

impl Env<'_> {
    /// Whether `name` is set.
    pub fn has(&self, name: &str) -> bool {
        self.vars.iter().any(|(n, _)| n == name)
    }

    /// For a set variable: whether it is the node's IP from the downward API. A name
    /// given twice counts as its last entry, the one the kubelet puts in force.
    pub fn is_host_ip(&self, name: &str) -> Option<bool> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, host_ip)| *host_ip)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Env<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EnvVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for EnvVisitor<'a> {
            type Value = Env<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of environment variables")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Env<'a>, A::Error> {
                let mut env = Env {
                    vars: Vec::with_capacity(seq.size_hint().unwrap_or(16)),
                    nvidia: Vec::new(),
                };
                let mut index = 0;
                while let Some(Object(var)) = seq.next_element::<Object<EnvVar<'de>>>()? {
                    if var.name.starts_with(NVIDIA_ENV_PREFIX) {
                        env.nvidia.push(NvidiaVar {
                            index,
                            name: var.name.to_string(),
                            value: match &var.value_from {
                                Some(_) => None,
                                None => Some(var.value.as_deref().unwrap_or("").to_string()),
                            },
                        });
                    }
                    index += 1;
                    let host_ip = var
                        .value_from
                        .and_then(|v| v.field_ref)
                        .is_some_and(|f| f.field_path == HOST_IP_FIELD);
                    env.vars.push((var.name, host_ip));
                }
                Ok(env)
            }
        }
        d.deserialize_seq(EnvVisitor(PhantomData))
    }
}

/// One `envFrom` source: every key of a ConfigMap or Secret, each behind `prefix`.
/// Which keys it holds is unknown at admission.
#[derive(Debug, Deserialize)]
pub struct EnvFromSource<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub prefix: Option<Cow<'a, str>>,
}

impl EnvFromSource<'_> {
    /// Whether this source may define `name`.
    pub fn may_set(&self, name: &str) -> bool {
        name.starts_with(self.prefix.as_deref().unwrap_or(""))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    value: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    value_from: Option<EnvVarSource<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVarSource<'a> {
    #[serde(borrow, default, deserialize_with = "object_opt")]
    field_ref: Option<FieldRef<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldRef<'a> {
    #[serde(borrow, default)]
    field_path: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub mount_path: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub host_path: Option<HostPath<'a>>,
    #[serde(borrow, default, deserialize_with = "object_opt")]
    pub secret: Option<SecretVolume<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct HostPath<'a> {
    #[serde(borrow, default)]
    pub path: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolume<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub secret_name: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Resources<'a> {
    #[serde(borrow, default)]
    pub limits: Option<QuantityMap<'a>>,
    #[serde(borrow, default)]
    pub requests: Option<QuantityMap<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub key: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub operator: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub value: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub effect: Option<Cow<'a, str>>,
    #[serde(default)]
    pub toleration_seconds: Option<i64>,
}

/// A JSON object of strings (labels, annotations, nodeSelector), in document order.
/// Lookups take the last duplicate, as the API server's decoder does.
pub type StrMap<'a> = Pairs<'a, Borrowed<'a>>;

/// `resources.limits` / `resources.requests`: resource name → quantity text. The API
/// server's Quantity accepts JSON numbers as well as strings, so this does too.
pub type QuantityMap<'a> = Pairs<'a, QuantityText<'a>>;

/// A JSON object read as (key, text) pairs; `V` decides which JSON values are accepted.
#[derive(Debug)]
pub struct Pairs<'a, V>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>, PhantomData<V>);

impl<V> Default for Pairs<'_, V> {
    fn default() -> Self {
        Pairs(Vec::new(), PhantomData)
    }
}

impl<V> Pairs<'_, V> {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

/// A value that reads as text.
pub trait Text<'a> {
    fn into_text(self) -> Cow<'a, str>;
}

impl<'de: 'a, 'a, V: Deserialize<'de> + Text<'a>> Deserialize<'de> for Pairs<'a, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor<'a, V>(PhantomData<(&'a (), V)>);
        impl<'de: 'a, 'a, V: Deserialize<'de> + Text<'a>> Visitor<'de> for PairsVisitor<'a, V> {
            type Value = Pairs<'a, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<Borrowed<'a>, V>()? {
                    out.push((k.0, v.into_text()));
                }
                Ok(Pairs(out, PhantomData))
            }
        }
        d.deserialize_map(PairsVisitor(PhantomData))
    }
}

/// A string borrowed from the input when it has no escapes.
#[derive(Debug)]
pub struct Borrowed<'a>(pub Cow<'a, str>);

impl<'a> Text<'a> for Borrowed<'a> {
    fn into_text(self) -> Cow<'a, str> {
        self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Not `Cow::deserialize`: serde's impl for `Cow` always allocates an owned copy.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(V).map(Borrowed)
    }
}

/// An optional string, borrowed like [`Borrowed`]: serde's own `Option<Cow<str>>` always
/// copies, `#[serde(borrow)]` only borrows a bare `Cow`.
pub(crate) fn borrowed_opt<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Option::<Borrowed<'a>>::deserialize(d).map(|o| o.map(|Borrowed(s)| s))
}

/// The text of a quantity given as a JSON string or number.
#[derive(Debug)]
pub struct QuantityText<'a>(Cow<'a, str>);

impl<'a> Text<'a> for QuantityText<'a> {
    fn into_text(self) -> Cow<'a, str> {
        self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for QuantityText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = QuantityText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quantity (string or number)")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v.is_finite() {
                    Ok(QuantityText(Cow::Owned(v.to_string())))
                } else {
                    Err(E::custom("a quantity must be a finite number"))
                }
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A Kubernetes object that must be a JSON object, never an array (see the module doc).
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData))
    }
}

fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Object::deserialize(d).map(|Object(t)| t)
}

fn object_opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|Object(t)| t))
}

fn objects_opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    // `Object<T>` has the layout of `T`: the collect reuses the vector in place.
    Option::<Vec<Object<T>>>::deserialize(d)
        .map(|o| o.map(|v| v.into_iter().map(|Object(t)| t).collect()))
}
