//! The core through its public API on realistic inputs: GitLab Runner job pods through the
//! whole review path against reviewed golden answers, the SKA example policies, and the
//! fuzzers' committed inputs. In the crate's unit-test binary, not in `tests/`: Cargo
//! links each integration test target separately, and a binary fewer is seconds of every
//! build on 2 cores. They use only what the crate makes public.

mod fuzz_corpus;
mod golden;
mod golden_gpu_workloads;
mod ska_examples;
mod support;
