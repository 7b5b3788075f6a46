//! The shared checks, seen through the sections that use them.

use crate::policy::tests::assert_problems_located;

#[test]
fn wrong_tolerations_and_label_selectors_are_rejected_with_file_line_and_key() {
    let cases: &[(&str, &str, u64)] = &[
        (
            "defaultClass: a\nclasses:\n  a:\n    tolerations: [ { key: k, operator: Maybe } ]\n",
            "classes.a.tolerations[0]: operator \"Maybe\" is not valid; use Exists or Equal",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    tolerations: [ { key: k, operator: Exists, effect: NoWay } ]\n",
            "effect \"NoWay\" is not valid",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    tolerations: [ { key: k, operator: Exists, value: v } ]\n",
            "operator Exists takes no value",
            4,
        ),
        (
            "defaultClass: a\nciNodes:\n  tolerations:\n    - { key: k, effect: NoSchedule, tolerationSeconds: 5 }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "ciNodes.tolerations[0]: tolerationSeconds needs effect NoExecute",
            4,
        ),
        (
            "defaultClass: a\nclasses:\n  a:\n    nodeSelector: { \"bad key!\": x }\n",
            "is not a valid label key",
            4,
        ),
    ];
    assert_problems_located(cases);
}
