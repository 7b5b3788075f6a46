//! Builders shared by the doctor's table tests: the parts of Kubernetes objects the
//! checks read, from string pairs.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Labels (or a node selector) from `(key, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

/// The metadata of an object with this name and these labels.
pub fn named(name: &str, label_pairs: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(labels(label_pairs)),
        ..ObjectMeta::default()
    }
}
