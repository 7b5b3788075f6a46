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
    assert!(uninstall.contains("-l app.kubernetes.io/name=ci-pod-webhook"));
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
