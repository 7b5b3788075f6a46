use super::*;
use prometheus_client::registry::{Registry, Unit};

#[test]
fn a_sub_millisecond_answer_lands_in_a_sub_millisecond_bucket() {
    let histogram = LatencyHistogram::default();
    histogram.observe(Duration::from_micros(80));
    histogram.observe(Duration::from_secs(3));
    let mut registry = Registry::default();
    registry.register_with_unit("d", "d", Unit::Seconds, histogram);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(
        text.contains(r#"d_seconds_bucket{le="0.00005"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"d_seconds_bucket{le="0.0001"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"d_seconds_bucket{le="1.0"} 1"#), "{text}");
    assert!(text.contains(r#"d_seconds_bucket{le="+Inf"} 2"#), "{text}");
    assert!(text.contains("d_seconds_count 2"), "{text}");
    assert!(text.contains("d_seconds_sum 3.00008"), "{text}");
}
