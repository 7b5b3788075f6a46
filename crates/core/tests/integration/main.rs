//! The core through its public API on realistic inputs: GitLab Runner job pods through the
//! whole review path against reviewed golden answers, the SKA example policies, and the
//! fuzzers' committed inputs. One binary (Cargo links each `tests/*.rs` separately).

mod fuzz_corpus;
mod golden;
mod golden_gpu_workloads;
mod ska_examples;
mod support;
