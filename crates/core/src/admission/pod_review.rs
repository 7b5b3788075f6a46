//! Reviews written the way the API server writes them, for everything that makes one
//! itself: `mutate` given a Pod, the tests and the benches. One constructor instead of
//! hand-written JSON in each, so every made-up review has the API server's shape and
//! field order (the single pass relies on that order to read the pod on the way).

use serde::Serialize;
use serde_json::Value;

use super::{API_VERSION, KIND};

/// The uid of a review that did not come from an API server.
pub const MADE_UP_UID: &str = "00000000-0000-0000-0000-00000000c11e";

/// A review of one pod. Start from [`PodReview::create`] and set what differs.
#[derive(Debug, Clone)]
pub struct PodReview<'a> {
    pub uid: &'a str,
    pub operation: &'a str,
    /// `resize`, `ephemeralcontainers`, …; `None` for the pod itself.
    pub sub_resource: Option<&'a str>,
    /// `request.name`: the API server sends none for a pod that has only a generateName.
    pub name: Option<&'a str>,
    pub namespace: &'a str,
    /// The requesting user (`request.userInfo`).
    pub username: &'a str,
    pub user_uid: Option<&'a str>,
    pub groups: &'a [&'a str],
    pub object: &'a Value,
    pub old_object: Option<&'a Value>,
}

impl<'a> PodReview<'a> {
    /// A CREATE of `pod` in `namespace`, by no particular user, named as the pod is.
    pub fn create(namespace: &'a str, pod: &'a Value) -> PodReview<'a> {
        PodReview {
            uid: MADE_UP_UID,
            operation: "CREATE",
            sub_resource: None,
            name: pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty()),
            namespace,
            username: "",
            user_uid: None,
            groups: &[],
            object: pod,
            old_object: None,
        }
    }

    pub fn by(mut self, username: &'a str) -> Self {
        self.username = username;
        self
    }

    /// The AdmissionReview, as the API server would send it.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising JSON values and strings into a Vec cannot fail.
        serde_json::to_vec(&self.wire()).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or_default()
    }

    fn wire(&self) -> Wire<'_> {
        const POD: GroupVersionKind = GroupVersionKind {
            group: "",
            version: "v1",
            kind: "Pod",
        };
        const PODS: GroupVersionResource = GroupVersionResource {
            group: "",
            version: "v1",
            resource: "pods",
        };
        Wire {
            kind: KIND,
            api_version: API_VERSION,
            request: Request {
                uid: self.uid,
                kind: POD,
                resource: PODS,
                sub_resource: self.sub_resource,
                request_kind: POD,
                request_resource: PODS,
                request_sub_resource: self.sub_resource,
                name: self.name,
                namespace: self.namespace,
                operation: self.operation,
                user_info: UserInfo {
                    username: self.username,
                    uid: self.user_uid,
                    groups: self.groups,
                },
                object: self.object,
                old_object: self.old_object,
                dry_run: false,
                options: Options {
                    kind: match self.operation {
                        "CREATE" => "CreateOptions",
                        "DELETE" => "DeleteOptions",
                        _ => "UpdateOptions",
                    },
                    api_version: "meta.k8s.io/v1",
                },
            },
        }
    }
}

/// The fields in the order of the API server's Go structs (`TypeMeta`, then
/// `AdmissionRequest`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    kind: &'static str,
    api_version: &'static str,
    request: Request<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    uid: &'a str,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_resource: Option<&'a str>,
    request_kind: GroupVersionKind,
    request_resource: GroupVersionResource,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_sub_resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    namespace: &'a str,
    operation: &'a str,
    user_info: UserInfo<'a>,
    object: &'a Value,
    /// `null` for a CREATE, as the API server writes it.
    old_object: Option<&'a Value>,
    dry_run: bool,
    options: Options,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Options {
    kind: &'static str,
    api_version: &'static str,
}

#[derive(Serialize)]
struct GroupVersionKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

#[derive(Serialize)]
struct GroupVersionResource {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
}

#[derive(Serialize)]
struct UserInfo<'a> {
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    groups: &'a [&'a str],
}
