//! The documentation holds: every `ci-pod-webhook` command line it shows parses with the
//! real command line, and the uninstall and rotation steps keep the properties their text
//! claims (no step that fails on a partial install, no step that undoes a customised one,
//! and nothing the webhook installs left behind).

use std::path::{Path, PathBuf};

use ci_pod_webhook::cli::Cli;
use clap::Parser;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/, certs/ and manifests/.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![repo().join("README.md")];
    for dir in ["docs", "certs", "manifests"] {
        walk(&repo().join(dir), &mut files);
    }
    files
}

/// The lines of the fenced code blocks of `text`, with `\` continuations joined.
fn code_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        if !inside {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending).trim().to_string());
            }
        }
    }
    lines
}

/// Inline code spans of `text` (between single backticks).
fn inline_spans(text: &str) -> Vec<String> {
    let mut spans = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split('`').collect();
        spans.extend(parts.iter().skip(1).step_by(2).map(|s| s.to_string()));
    }
    spans
}

/// Splits a shell command into words: quotes group, nothing is expanded.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (None, c) => word.push(c),
        }
    }
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}

const SUBCOMMANDS: [&str; 5] = ["mutate", "serve", "certs", "check-policy", "default-policy"];

/// The `ci-pod-webhook` invocation in `line`, if any: the binary (or `cargo run`) at the
/// start of a command, followed by a subcommand; its words up to a pipe, a redirection,
/// a comment or the next command, without optional `[…]` parts of a synopsis.
fn invocation(line: &str) -> Option<Vec<String>> {
    let starts = ["ci-pod-webhook ", "cargo run --release -- "];
    let command_starts = std::iter::once(0).chain(
        ["| ", "&& ", "; ", "$ "]
            .iter()
            .flat_map(|sep| line.match_indices(sep).map(|(i, m)| i + m.len())),
    );
    let rest = command_starts
        .filter_map(|at| {
            let tail = &line[at..];
            starts
                .iter()
                .find_map(|s| tail.strip_prefix(s))
                .filter(|t| {
                    SUBCOMMANDS
                        .iter()
                        .any(|sub| t.split(' ').next() == Some(sub))
                })
        })
        .next()?;
    let end = [" | ", " > ", " # ", " && ", "; "]
        .iter()
        .filter_map(|stop| rest.find(stop))
        .min()
        .unwrap_or(rest.len());
    let mut args = vec!["ci-pod-webhook".to_string()];
    let mut optional = false;
    for word in words(&rest[..end]) {
        optional |= word.starts_with('[');
        if !optional {
            args.push(word.clone());
        }
        optional &= !word.ends_with(']');
    }
    Some(args)
}

#[test]
fn every_documented_command_line_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        let spans = inline_spans(&text)
            .into_iter()
            // A span with no flag is a command's name in prose ("`ci-pod-webhook certs`");
            // one with `[` is a synopsis.
            .filter(|s| s.contains(" --") && !s.contains('['));
        for line in code_lines(&text).into_iter().chain(spans) {
            let Some(args) = invocation(&line) else {
                continue;
            };
            checked += 1;
            if let Err(e) = Cli::try_parse_from(&args) {
                failures.push(format!("{}: {line}\n{e}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 10, "only {checked} command lines found");
}

fn deploy_docs() -> String {
    std::fs::read_to_string(repo().join("docs/deploy.md")).expect("read")
}

fn section<'t>(text: &'t str, heading: &str) -> &'t str {
    let start = text.find(heading).unwrap_or_else(|| panic!("no {heading}"));
    let rest = &text[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn the_uninstall_steps_succeed_on_a_partial_install() {
    let deploy = deploy_docs();
    let uninstall = section(&deploy, "## Uninstalling");
    let deletes: Vec<String> = code_lines(uninstall)
        .into_iter()
        .filter(|l| l.starts_with("kubectl delete"))
        .collect();
    assert!(deletes.len() >= 3, "{deletes:?}");
    for line in &deletes {
        // `-k` renders a kustomization: fails without the self-managed certs, and on a
        // kind the cluster does not know (ServiceMonitor without the Prometheus Operator).
        assert!(!line.contains(" -k "), "{line}");
        // A name that is gone fails without --ignore-not-found; a selector never does.
        assert!(
            line.contains("--ignore-not-found") || line.contains(" -l "),
            "{line}"
        );
    }
}

/// What the uninstall deletes outside the namespace, by label.
const CLUSTER_KINDS_DELETED: [&str; 5] = [
    "Namespace",
    "MutatingWebhookConfiguration",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
];
/// Kinds that live in the namespace, so deleting it deletes them.
const NAMESPACED_KINDS: [&str; 11] = [
    "ServiceAccount",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "ConfigMap",
    "Secret",
    "Certificate",
    "Issuer",
    "ServiceMonitor",
    "PrometheusRule",
    "RoleBinding",
];

#[test]
fn the_uninstall_steps_reach_every_object_the_webhook_installs() {
    let deploy = deploy_docs();
    let uninstall = section(&deploy, "## Uninstalling");
    for kind in ["clusterrole", "clusterrolebinding", "priorityclass"] {
        assert!(uninstall.contains(kind), "the uninstall misses {kind}");
    }
    assert!(
        delete_selectors(uninstall)
            .iter()
            .any(|(key, values)| key == "app.kubernetes.io/name"
                && values.iter().any(|v| v == "ci-pod-webhook")),
        "the uninstall selects app.kubernetes.io/name=ci-pod-webhook"
    );
    let base =
        std::fs::read_to_string(repo().join("manifests/base/kustomization.yaml")).expect("read");
    assert!(
        base.contains("app.kubernetes.io/name: ci-pod-webhook"),
        "the base labels every object with the uninstall's selector"
    );
    let dirs = [
        "manifests/base",
        "manifests/overlays/cert-manager",
        "manifests/overlays/monitoring",
    ];
    for dir in dirs {
        for entry in std::fs::read_dir(repo().join(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".yaml") || name == "kustomization.yaml" || name == "policy.yaml" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for object in serde_saphyr::from_multiple::<Value>(&text).expect("yaml") {
                let kind = object["kind"].as_str().unwrap_or_default();
                assert!(
                    CLUSTER_KINDS_DELETED.contains(&kind) || NAMESPACED_KINDS.contains(&kind),
                    "{}: {kind} is not deleted by the uninstall steps in docs/deploy.md",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_rotation_applies_the_kustomization_you_installed_with() {
    let readme = std::fs::read_to_string(repo().join("manifests/overlays/self-managed/README.md"))
        .expect("read");
    let rotation = section(&readme, "## Rotation");
    let applies: Vec<String> = code_lines(rotation)
        .into_iter()
        .filter(|l| l.starts_with("kubectl apply"))
        .collect();
    assert_eq!(applies.len(), 3, "{applies:?}");
    for line in &applies {
        // `cd` into the overlay and `apply -k .` puts the overlay's defaults back over a
        // customised install.
        assert_eq!(line, "kubectl apply -k \"$deploy\"");
    }
    assert!(rotation.contains("deploy=deploy/ci-pod-webhook"));
    assert!(!code_lines(rotation).iter().any(|l| l.starts_with("cd ")));
}

/// Directories the docs tell an admin to make (`ci-pod-webhook certs --out …`): named,
/// never committed.
const MADE_BY_THE_READER: [&str; 2] = [
    "manifests/overlays/self-managed/certs",
    "manifests/overlays/self-managed/certs.next",
];

/// The repository paths a text names (`src/…`, `crates/…`, `tests/…`, …), as written.
fn repository_paths(text: &str) -> Vec<String> {
    const ROOTS: [&str; 9] = [
        "src/",
        "crates/",
        "tests/",
        "benches/",
        "examples/",
        "scripts/",
        "fuzz/",
        "manifests/",
        "docs/",
    ];
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| is_path_char(c)) {
        let word_end = rest[at..]
            .find(|c: char| !is_path_char(c))
            .map_or(rest.len(), |end| at + end);
        let word = &rest[at..word_end];
        // A path starts a word: `tests/x` in `crates/core/tests/x` is part of the longer one.
        if ROOTS.iter().any(|root| word.starts_with(root)) {
            let path = word.trim_end_matches(['.', '-']);
            paths.push(path.to_string());
        }
        rest = &rest[word_end..];
    }
    paths
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let mut files = markdown_files();
    files.push(repo().join("BENCHMARKS.md"));
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for (number, line) in text.lines().enumerate() {
            for path in repository_paths(line) {
                // `…` ends a name the text shortens on purpose (`crash-87a8c409…`).
                if line.contains(&format!("{path}…")) || MADE_BY_THE_READER.contains(&path.as_str())
                {
                    continue;
                }
                let relative = file.parent().expect("a directory").join(&path);
                if !repo().join(&path).exists() && !relative.exists() {
                    missing.push(format!(
                        "{}:{}: {path}",
                        file.strip_prefix(repo()).unwrap_or(file).display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the docs name paths that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn repository_paths_are_found_where_a_word_starts() {
    assert_eq!(
        repository_paths("see `src/cli/serve.rs`, crates/core/tests/golden and tests/golden/."),
        [
            "src/cli/serve.rs",
            "crates/core/tests/golden",
            "tests/golden/"
        ]
    );
    assert!(repository_paths("the webhook's src and tests").is_empty());
}

/// The label selectors of the `kubectl delete … -l SELECTOR` lines of `text`: each a
/// list of (key, accepted values); `key=value` or `key in (a,b)`.
fn delete_selectors(text: &str) -> Vec<(String, Vec<String>)> {
    let mut selectors = Vec::new();
    for line in code_lines(text)
        .into_iter()
        .filter(|l| l.starts_with("kubectl delete"))
    {
        let words = words(&line);
        for pair in words.windows(2).filter(|w| w[0] == "-l") {
            let selector = pair[1].trim();
            if let Some((key, values)) = selector.split_once(" in ") {
                let values = values.trim().trim_start_matches('(').trim_end_matches(')');
                selectors.push((
                    key.trim().to_string(),
                    values.split(',').map(|v| v.trim().to_string()).collect(),
                ));
            } else if let Some((key, value)) = selector.split_once('=') {
                selectors.push((key.to_string(), vec![value.to_string()]));
            }
        }
    }
    selectors
}

/// The objects a kustomization directory holds with the labels its `labels:` add.
fn labelled_objects(dir: &str) -> Vec<Value> {
    let root = repo().join(dir);
    let kustomization: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("kustomization.yaml")).expect("kustomization"),
    )
    .expect("YAML");
    let mut added = serde_json::Map::new();
    for entry in kustomization["labels"].as_array().into_iter().flatten() {
        if let Some(pairs) = entry["pairs"].as_object() {
            added.extend(pairs.clone());
        }
    }
    let mut objects = Vec::new();
    for resource in kustomization["resources"].as_array().into_iter().flatten() {
        let path = root.join(resource.as_str().expect("a path"));
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for mut object in serde_saphyr::from_multiple::<Value>(&text).expect("yaml") {
            let labels = object["metadata"]
                .as_object_mut()
                .expect("metadata")
                .entry("labels")
                .or_insert_with(|| Value::Object(Default::default()));
            labels
                .as_object_mut()
                .expect("labels")
                .extend(added.clone());
            objects.push(object);
        }
    }
    objects
}

#[test]
fn the_uninstall_removes_every_cluster_wide_object_and_binding_the_docs_install() {
    let deploy = deploy_docs();
    let uninstall = section(&deploy, "## Uninstalling");
    let selectors = delete_selectors(uninstall);
    assert!(!selectors.is_empty(), "{uninstall}");
    let selected = |object: &Value| {
        selectors.iter().any(|(key, values)| {
            object["metadata"]["labels"][key]
                .as_str()
                .is_some_and(|v| values.iter().any(|w| w == v))
        })
    };
    // Every kustomization the docs apply, but the node Docker daemon's, which stays.
    for dir in [
        "manifests/base",
        "manifests/doctor",
        "manifests/audit",
        "manifests/overlays/cert-manager",
        "manifests/overlays/monitoring",
    ] {
        for object in labelled_objects(dir) {
            let kind = object["kind"].as_str().unwrap_or_default();
            if !CLUSTER_KINDS_DELETED.contains(&kind) || kind == "Namespace" {
                continue;
            }
            assert!(
                selected(&object),
                "{dir}: {kind} {} is left behind by the uninstall steps in docs/deploy.md",
                object["metadata"]["name"]
            );
        }
    }
    // Bindings the docs have an admin create by hand carry no label: deleted by name.
    let deletes = code_lines(uninstall).join("\n");
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        for line in code_lines(&text) {
            let words = words(&line);
            if let ["kubectl", "create", "clusterrolebinding", name, ..] =
                words.iter().map(String::as_str).collect::<Vec<_>>()[..]
            {
                let name = name.split('$').next().unwrap_or(name);
                assert!(
                    deletes.contains(name),
                    "{}: the uninstall does not delete clusterrolebinding {name}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn no_doc_removes_the_webhook_with_kubectl_delete_k() {
    // docs/deploy.md ("Uninstalling") says why: it fails on partial installs.
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        for line in code_lines(&text).into_iter().chain(inline_spans(&text)) {
            assert!(
                !line.contains("kubectl delete -k "),
                "{}: {line}: use the steps of docs/deploy.md#uninstalling",
                file.display()
            );
        }
    }
    let ska = std::fs::read_to_string(repo().join("docs/ska-migration.md")).expect("read");
    assert!(
        ska.contains("deploy.md#uninstalling"),
        "the SKA rollback points at them"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped,
/// spaces made `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The headings of a Markdown file (outside code blocks), without their `#`s.
fn headings(text: &str) -> Vec<String> {
    let mut inside = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if !inside && line.starts_with('#') {
            found.push(line.trim_start_matches('#').trim().to_string());
        }
    }
    found
}

#[test]
fn every_section_a_doc_or_an_example_points_at_exists() {
    let mut broken = Vec::new();
    let mut checked = 0;
    let mut sources = markdown_files();
    for name in ["ska-dp.yaml", "ska-techops.yaml"] {
        sources.push(repo().join("examples/policies").join(name));
    }
    for source in &sources {
        let text = std::fs::read_to_string(source).expect("read");
        // Links: [text](path.md#anchor) and (#anchor).
        let mut targets: Vec<(String, String, bool)> = Vec::new();
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            if let Some((path, fragment)) = rest[..end].split_once('#')
                && (path.is_empty() || path.ends_with(".md"))
            {
                targets.push((path.to_string(), fragment.to_string(), true));
            }
        }
        // Comments of the example policies: (docs/x.md, "Section").
        for (at, _) in text.match_indices("docs/") {
            let rest = &text[at..];
            if let Some((path, tail)) = rest.split_once(".md, \"")
                && !path.contains(char::is_whitespace)
                && let Some((title, _)) = tail.split_once('"')
            {
                targets.push((format!("{path}.md"), title.to_string(), false));
            }
        }
        for (path, fragment, is_anchor) in targets {
            let file = if path.is_empty() {
                source.clone()
            } else if source.extension().is_some_and(|e| e == "yaml") {
                repo().join(&path)
            } else {
                source.parent().expect("a directory").join(&path)
            };
            let Ok(target) = std::fs::read_to_string(&file) else {
                continue; // every_repository_path_the_docs_name_exists says so
            };
            checked += 1;
            let found = headings(&target).iter().any(|h| {
                if is_anchor {
                    anchor(h) == fragment
                } else {
                    h.to_lowercase().contains(&fragment.to_lowercase())
                }
            });
            if !found {
                broken.push(format!(
                    "{}: {path}#{fragment}",
                    source.strip_prefix(repo()).unwrap_or(source).display()
                ));
            }
        }
    }
    assert!(checked >= 10, "only {checked} links found");
    assert!(
        broken.is_empty(),
        "links to sections that do not exist:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_ska_guide_goes_audit_then_warn_then_enabled_per_class() {
    let ska = std::fs::read_to_string(repo().join("docs/ska-migration.md")).expect("read");
    let at = |needle: &str| {
        ska.find(needle)
            .unwrap_or_else(|| panic!("docs/ska-migration.md never says {needle:?}"))
    };
    let audit = at("ci-pod-webhook audit");
    let warn = at("enforcement: warn");
    let enforce = at("enforcement: enforce");
    assert!(
        audit < warn && warn < enforce,
        "audit, then warn, then enforce"
    );
    assert!(ska.contains("rollout.md"), "it points at docs/rollout.md");
}

#[test]
fn pinning_a_class_on_a_namespace_is_advised_only_where_one_runner_makes_the_jobs() {
    let deploy = deploy_docs();
    let rollout = section(&deploy, "## Rolling out safely");
    let pin = rollout
        .split("\n4. ")
        .nth(1)
        .expect("the step about runners from before 17.9");
    let pin = &pin[..pin.find("\n5. ").unwrap_or(pin.len())];
    assert!(
        pin.contains("runnerTokens") && pin.contains("shared"),
        "pinning a namespace several runners share puts every job on one class: {pin}"
    );
}

#[test]
fn the_rotation_keeps_the_names_of_the_certificate_it_replaces() {
    for file in [
        "certs/README.md",
        "manifests/overlays/self-managed/README.md",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect("read");
        let rotation = section(&text, "otation");
        let makes: Vec<String> = code_lines(rotation)
            .into_iter()
            .filter(|l| l.starts_with("ci-pod-webhook certs"))
            .collect();
        assert!(
            !makes.is_empty() || rotation.contains("--names-from"),
            "{file}: the rotation makes no certificate"
        );
        for line in makes {
            assert!(
                line.contains("--names-from"),
                "{file}: {line} drops the install's --ip/--dns names"
            );
        }
        assert!(rotation.contains("--names-from"), "{file}");
    }
}
