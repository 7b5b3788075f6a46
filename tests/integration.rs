//! The integration tests: the crate through its public API, the real binary as a child
//! process, and real servers on loopback (TLS, HTTP/1.1 and HTTP/2, the namespace watch
//! against a fake API server). One test binary, so the crate is linked once; each file
//! under `integration/` is one subject. `support/` holds the shared harness.
//!
//! `cargo test` runs them; `cargo test --test integration tls::` runs one file's.

mod support;

mod integration {
    mod cli;
    mod commands;
    mod docs;
    mod escalation;
    mod flood;
    mod hostile;
    mod hostile_memory;
    mod image;
    mod manifests;
    mod namespaces;
    mod serve;
    mod server;
    mod sizing;
    mod ska;
    mod slow_clients;
    mod tls;
    mod tls_posture;
    mod trusted_peers;
    mod under_load;
}
