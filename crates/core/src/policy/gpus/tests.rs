//! A class's `gpu` section.

use crate::policy::tests::assert_problems_located;

#[test]
fn wrong_gpu_counts_are_rejected_with_file_line_and_key() {
    let cases: &[(&str, &str, u64)] = &[
        (
            "defaultClass: a\nclasses:\n  a:\n    gpu: { count: 2, max: 1 }\n",
            "classes.a.gpu.max: must be a whole number at least count (2)",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    gpu: { count: 0 }\n",
            "classes.a.gpu.count",
            4,
        ),
    ];
    assert_problems_located(cases);
}
