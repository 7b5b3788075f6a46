//! A class's `extendedResources`.

use crate::policy::tests::assert_problems_located;
use crate::policy::{Policy, is_standard};
use crate::quantity::Quantity;

#[test]
fn grants_are_read_with_their_maxima() {
    let policy = Policy::parse(
        "defaultClass: a\nclasses:\n  a:\n    max: { cpu: \"4\", memory: 8Gi }\n    extendedResources: { habana.ai/gaudi: 2, hugepages-2Mi: 1Gi, hugepages-1Gi: \"2Gi\" }\n",
        "p.yaml",
    )
    .expect("valid");
    let granted = &policy.classes[0].extended_resources;
    assert_eq!(granted["habana.ai/gaudi"], Quantity::from_units(2));
    assert_eq!(granted["hugepages-2Mi"], Quantity::parse("1Gi").expect("q"));
    assert_eq!(granted.len(), 3);
    assert!(is_standard("ephemeral-storage") && !is_standard("hugepages-2Mi"));
}

#[test]
fn wrong_grants_are_rejected_with_file_line_and_key() {
    let head = "defaultClass: a\nclasses:\n  a:\n    max: { cpu: \"4\", memory: 8Gi }\n";
    let cases: Vec<(String, &str, u64)> = vec![
        (
            format!("{head}    extendedResources: {{ amd.com/gpu: 1 }}\n"),
            "classes.a.extendedResources: amd.com/gpu is a GPU resource; give GPUs with classes.a.gpu",
            5,
        ),
        (
            format!(
                "{head}    gpu: {{ resource: example.com/accel }}\n    extendedResources: {{ example.com/accel: 1 }}\n"
            ),
            "classes.a.extendedResources: example.com/accel is a GPU resource",
            6,
        ),
        (
            format!("{head}    extendedResources: {{ habana.ai/gaudi: 0 }}\n"),
            "classes.a.extendedResources.habana.ai/gaudi: 0 must be a whole number of devices, at least 1",
            5,
        ),
        (
            format!("{head}    extendedResources: {{ hugepages-1Gi: 1536Mi }}\n"),
            "classes.a.extendedResources.hugepages-1Gi: 1536Mi must be a positive multiple of the page size 1Gi",
            5,
        ),
        (
            format!("{head}    extendedResources: {{ storage: 1Gi }}\n"),
            "classes.a.extendedResources: \"storage\" is neither an extended resource name",
            5,
        ),
    ];
    let cases: Vec<(&str, &str, u64)> =
        cases.iter().map(|(t, m, l)| (t.as_str(), *m, *l)).collect();
    assert_problems_located(&cases);
}
