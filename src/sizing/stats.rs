//! The arithmetic of a sizing report, on whole bytes and millicores: Prometheus'
//! floats made exact once, percentiles, headroom and readable rounding.

use ci_pod_webhook_core::quantity::{Format, Quantity};

const MI: i64 = 1024 * 1024;
/// The smallest memory step of a suggestion (and the smallest suggestion).
const MEMORY_STEP: i64 = 64 * MI;

/// Prometheus' float arithmetic leaves noise in the last bits (a CPU rate of 2.35 can
/// come back as 2.3500000000000001); a value this close to a whole unit is that unit,
/// not the next one up.
const NOISE: f64 = 1e-6;

fn ceil_whole(value: f64) -> i64 {
    if !value.is_finite() || value <= 0.0 {
        return 0;
    }
    let nearest = value.round();
    let whole = if (value - nearest).abs() < NOISE {
        nearest
    } else {
        value.ceil()
    };
    // `as` saturates at i64::MAX, which no real peak reaches.
    whole as i64
}

/// A byte count from Prometheus, rounded up to the byte.
pub fn bytes(value: f64) -> i64 {
    ceil_whole(value)
}

/// A CPU rate in cores from Prometheus, rounded up to the millicore.
pub fn millicores(cores: f64) -> i64 {
    ceil_whole(cores * 1000.0)
}

/// The nearest-rank percentile of ascending `sorted`: the value at rank ⌈p/100 × n⌉.
pub fn nearest_rank(sorted: &[i64], percent: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (n * percent as usize).div_ceil(100).clamp(1, n);
    Some(sorted[rank - 1])
}

/// `value × factor`, exactly, rounded up.
pub fn times(value: i64, factor: Quantity) -> i64 {
    let nanos = i128::from(value).saturating_mul(factor.nanos());
    let units = nanos.div_euclid(1_000_000_000) + i128::from(nanos.rem_euclid(1_000_000_000) != 0);
    i64::try_from(units).unwrap_or(i64::MAX)
}

/// `bytes` rounded up to a quarter of the power of two below it (at least 64Mi):
/// 1.1Gi → 1280Mi, 3.3Gi → 3584Mi, 6.1Gi → 7Gi, 10.3Gi → 12Gi, 17Gi → 20Gi. At most a
/// quarter more than asked, and a value a person would write in a policy.
pub fn readable_memory(bytes: i64) -> Quantity {
    let bytes = bytes.max(1);
    let power = 1i64 << (63 - bytes.leading_zeros());
    let step = (power / 4).max(MEMORY_STEP);
    let rounded = up_to(bytes, step);
    Quantity::from_units(rounded).with_format(Format::BinarySI)
}

/// `millicores` rounded up: to 100m up to one CPU, to half a CPU up to 4, to whole
/// CPUs above (450m → 500m, 1.2 → 1500m, 5.3 → 6).
pub fn readable_cpu(millicores: i64) -> Quantity {
    let millicores = millicores.max(1);
    let step = match millicores {
        ..=1000 => 100,
        1001..=4000 => 500,
        _ => 1000,
    };
    Quantity::from_milli(up_to(millicores, step))
}

/// `value` (positive) rounded up to a multiple of `step` (positive).
fn up_to(value: i64, step: i64) -> i64 {
    div_ceil(i128::from(value), i128::from(step))
        .saturating_mul(i128::from(step))
        .try_into()
        .unwrap_or(i64::MAX)
}

/// `a / b` rounded up, for `a ≥ 0` and `b > 0` (signed `div_ceil` is not stable).
pub fn div_ceil(a: i128, b: i128) -> i128 {
    a / b + i128::from(a % b != 0)
}
