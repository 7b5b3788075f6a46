//! Targeted JSONPatch operations against the request's raw JSON, each carrying what an
//! explanation needs: the value it replaces and the container it changes.
//!
//! Paths are built from tokens with `jsonptr`, which escapes `/` and `~` in keys such
//! as `ci.skao.int/class` (`ci.skao.int~1class`). A member is added to its parent only
//! when the parent exists; otherwise the parent is added whole, with the member in it.

use std::fmt::Write as _;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Map, Value};

use super::view::Pod;

/// One patch operation, with what it replaces and the container it changes, so that it
/// can be explained without the pod at hand.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub op: PatchOperation,
    /// The value before, when the operation replaces or removes one.
    pub before: Option<Value>,
    /// The name of the container (or init container) the operation changes, when its
    /// path is under one ([`Patch::name_containers`]).
    pub container: Option<String>,
}

impl Change {
    fn new(op: PatchOperation, before: Option<Value>) -> Change {
        Change {
            op,
            before,
            container: None,
        }
    }

    /// The annotation key, when the operation adds or replaces one annotation.
    pub fn annotation_key(&self) -> Option<String> {
        let path = match &self.op {
            PatchOperation::Add(op) => &op.path,
            PatchOperation::Replace(op) => &op.path,
            _ => return None,
        };
        let mut tokens = path.tokens().map(|t| t.decoded().into_owned());
        match (tokens.next(), tokens.next(), tokens.next(), tokens.next()) {
            (Some(m), Some(a), Some(key), None) if m == "metadata" && a == "annotations" => {
                Some(key)
            }
            _ => None,
        }
    }

    /// The change as `where: before → after`, containers named, for people.
    pub fn describe(&self) -> String {
        let (path, after) = match &self.op {
            PatchOperation::Add(op) => (&op.path, Some(&op.value)),
            PatchOperation::Replace(op) => (&op.path, Some(&op.value)),
            PatchOperation::Remove(op) => (&op.path, None),
            other => return format!("{other:?}"),
        };
        let tokens: Vec<String> = path.tokens().map(|t| t.decoded().into_owned()).collect();
        let mut place = String::new();
        for (i, token) in tokens.iter().enumerate() {
            let parent = if i > 0 { tokens[i - 1].as_str() } else { "" };
            if token == "-" {
                place.push_str("[+]");
            } else if let Ok(index) = token.parse::<usize>() {
                let in_container = i == 2 && matches!(parent, "containers" | "initContainers");
                let _ = match self.container.as_deref().filter(|_| in_container) {
                    Some(name) => write!(place, "[{name}]"),
                    None => write!(place, "[{index}]"),
                };
            } else if token.contains(['.', '/']) {
                let _ = write!(place, "[{token:?}]");
            } else {
                if !place.is_empty() {
                    place.push('.');
                }
                place.push_str(token);
            }
        }
        let show = |v: Option<&Value>| match v {
            None => "(none)".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        format!("{place}: {} → {}", show(self.before.as_ref()), show(after))
    }
}

/// The state of a JSON object member the patch wants to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// The parent object exists: members are added or replaced one by one.
    Present,
    /// The parent is absent or `null`: it is added whole.
    Missing,
}

impl Parent {
    pub fn of<T>(o: &Option<T>) -> Parent {
        if o.is_some() {
            Parent::Present
        } else {
            Parent::Missing
        }
    }
}

#[derive(Debug, Default)]
pub struct Patch {
    pub changes: Vec<Change>,
}

pub fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

impl Patch {
    pub fn add(&mut self, path: PointerBuf, value: Value) {
        self.changes.push(Change::new(
            PatchOperation::Add(AddOperation { path, value }),
            None,
        ));
    }

    pub fn replace(&mut self, path: PointerBuf, before: Value, value: Value) {
        self.changes.push(Change::new(
            PatchOperation::Replace(ReplaceOperation { path, value }),
            Some(before),
        ));
    }

    pub fn remove(&mut self, path: PointerBuf, before: Value) {
        self.changes.push(Change::new(
            PatchOperation::Remove(RemoveOperation { path }),
            Some(before),
        ));
    }

    /// Sets string members of the object at `parent`: one `add`/`replace` each when the
    /// object exists, or one `add` of a new object holding all of them when it does not.
    /// `members` holds (key, value before, value wanted); unchanged members are skipped.
    pub fn set_members(
        &mut self,
        parent: &[&str],
        state: Parent,
        members: impl IntoIterator<Item = (String, Option<String>, String)>,
    ) {
        let changed = members
            .into_iter()
            .filter(|(_, before, want)| before.as_deref() != Some(want.as_str()));
        match state {
            Parent::Missing => {
                let object: Map<String, Value> =
                    changed.map(|(k, _, v)| (k, Value::String(v))).collect();
                if !object.is_empty() {
                    self.add(pointer(parent), Value::Object(object));
                }
            }
            Parent::Present => {
                for (key, before, want) in changed {
                    let mut path = pointer(parent);
                    path.push_back(key.as_str());
                    match before {
                        Some(b) => self.replace(path, Value::String(b), Value::String(want)),
                        None => self.add(path, Value::String(want)),
                    }
                }
            }
        }
    }

    /// Appends items to the array at `parent`, or adds the array when it is missing. Two
    /// appends to the same missing array (Docker's variables, then the limits ones) make
    /// one `add` of the array with all items: a second `add` would replace the first.
    pub fn append(&mut self, parent: &[&str], state: Parent, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        match state {
            Parent::Missing => {
                let path = pointer(parent);
                let added = self.changes.iter_mut().find_map(|c| match &mut c.op {
                    PatchOperation::Add(AddOperation {
                        path: p,
                        value: Value::Array(array),
                    }) if *p == path => Some(array),
                    _ => None,
                });
                match added {
                    Some(array) => array.extend(items),
                    None => self.add(path, Value::Array(items)),
                }
            }
            Parent::Present => {
                for item in items {
                    let mut path = pointer(parent);
                    path.push_back("-");
                    self.add(path, item);
                }
            }
        }
    }

    /// Names the container of each change under `/spec/containers/N` or
    /// `/spec/initContainers/N`, from the pod the patch was made for.
    pub fn name_containers(&mut self, pod: &Pod<'_>) {
        let spec = pod.spec();
        for change in &mut self.changes {
            let mut tokens = change.op.path().tokens();
            let (Some(s), Some(list), Some(index)) = (tokens.next(), tokens.next(), tokens.next())
            else {
                continue;
            };
            let containers = match list.decoded().as_ref() {
                "containers" if s.decoded() == "spec" => &spec.containers,
                "initContainers" if s.decoded() == "spec" => &spec.init_containers,
                _ => continue,
            };
            change.container = index
                .decoded()
                .parse::<usize>()
                .ok()
                .and_then(|i| containers.as_ref()?.get(i))
                .map(|c| c.name.to_string());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// The JSONPatch document, as sent to the API server.
    pub fn to_json(&self) -> Vec<u8> {
        let ops: Vec<&PatchOperation> = self.changes.iter().map(|c| &c.op).collect();
        // Serialising plain JSON values into a Vec cannot fail.
        serde_json::to_vec(&ops).unwrap_or_default()
    }

    pub fn operations(&self) -> json_patch::Patch {
        json_patch::Patch(self.changes.iter().map(|c| c.op.clone()).collect())
    }
}

#[cfg(test)]
mod tests;
