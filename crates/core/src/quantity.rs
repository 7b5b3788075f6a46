//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`), parsed and compared exactly.
//!
//! Pod specs carry CPU and memory as strings. The webhook compares them with
//! limits and writes them back into patches, so it needs the same answers as the
//! API server: `1Ki` is more than `1k`, `0.5` equals `500m`, and `1.5Gi` is
//! written back as `1536Mi`. Going through `f64` gets the edges wrong, so this is
//! a port of `k8s.io/apimachinery/pkg/api/resource` (`quantity.go`, `suffix.go`,
//! `amount.go`) onto a fixed-point `i128` of nano-units:
//!
//! * Grammar: `[+-]` then `<digits>`, `<digits>.<digits>`, `<digits>.` or
//!   `.<digits>`, then a suffix: binary `Ki Mi Gi Ti Pi Ei`, decimal
//!   `n u m "" k M G T P E`, or an exponent `e<int>` / `E<int>` within ±(2^31-1).
//! * A non-zero value finer than 1n is rounded away from zero to the nano, as Go
//!   does (`amount.Round(amount, Nano.infScale(), inf.RoundUp)`).
//! * The suffix family is remembered as a [`Format`], and [`Display`](fmt::Display)
//!   writes Go's canonical `Quantity.String()` form for it.
//! * Equality, ordering and hashing look at the value only, never the format.
//!
//! Deliberate differences from Go:
//!
//! * Go caps only BinarySI values at 2^63-1 units; decimal values keep any
//!   magnitude (`"1e400"` stays `1e400`). Here every magnitude above 2^63-1
//!   units is capped, keeping the sign, whatever the suffix, so it fits an `i128`.
//! * Go's scanner reads a missing number as zero (`"."`, `"+"`, `"-"`, `"e3"`,
//!   `"Ki"` all parse to 0). Those are typos rather than quantities, so here
//!   they are errors, as the documented grammar says.
//! * Go's `String()` echoes the input verbatim when a fast path thinks it is
//!   already canonical (`"+1"`, `"1E3"`, `"1.001"` print as typed, see
//!   kubernetes/kubernetes#138165). Here the canonical form is always computed.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Nano-units in one unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Go's `maxAllowed` (2^63-1 units), in nano-units.
const MAX_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;
/// Number of decimal digits in [`MAX_NANOS`]: anything longer is over the cap.
const MAX_NANO_DIGITS: i64 = 28;
/// Largest exponent magnitude Go accepts: it negates an `int32` scale later.
const MAX_EXPONENT: i64 = i32::MAX as i64;
/// How much of a bad input an error message repeats.
const ECHO_CHARS: usize = 64;
const HINT: &str = "use a number with an optional suffix such as 500m, 2, 1.5Gi or 1e3";
/// Suffixes for 10^-9, 10^-6, ... 10^18.
const DECIMAL_SUFFIXES: [&str; 10] = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"];
/// Suffixes for 1024^0, 1024^1, ... 1024^6.
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// Which suffix family a quantity is written with, remembered from parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Powers of 1024: `Ki`, `Mi`, ... `Ei`.
    BinarySI,
    /// Powers of 1000: `n`, `u`, `m`, none, `k`, `M`, ... `E`.
    DecimalSI,
    /// Powers of ten written as `e<int>`.
    DecimalExponent,
}

/// A Kubernetes quantity: an exact multiple of 10^-9, plus the format it prints in.
///
/// Comparisons use the value only, so `1k == 1e3 == 1000`.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// Why a string is not a Kubernetes quantity. The echoed input is cut to 64 chars.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("\"\" is not a Kubernetes quantity: it is empty; {HINT}")]
    Empty,
    #[error("{input:?} is not a Kubernetes quantity: it does not start with a number; {HINT}")]
    MissingNumber { input: String },
    #[error(
        "{input:?} is not a Kubernetes quantity: {suffix:?} after the number is not a suffix \
         (Ki Mi Gi Ti Pi Ei, n u m k M G T P E) or an exponent (e3, E-6); {HINT}"
    )]
    UnknownSuffix { input: String, suffix: String },
    #[error(
        "{input:?} is not a Kubernetes quantity: the exponent must be between \
         -2147483647 and 2147483647; {HINT}"
    )]
    ExponentOutOfRange { input: String },
}

impl Quantity {
    /// Zero, DecimalSI.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
    };

    /// Parses a quantity the way Go's `resource.ParseQuantity` does (see module docs).
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        // Digits are ASCII, so these split points are always char boundaries.
        let (int_digits, after_int) = body.split_at(leading_digits(body));
        let (frac_digits, suffix) = match after_int.strip_prefix('.') {
            Some(rest) => rest.split_at(leading_digits(rest)),
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::MissingNumber { input: echo(s) });
        }
        let (format, exp10, exp2) = interpret_suffix(s, suffix)?;

        // The mantissa's digits without leading zeros; the value is digits × 10^scale nanos.
        let mut digits: Vec<u8> = int_digits
            .bytes()
            .chain(frac_digits.bytes())
            .map(|b| b - b'0')
            .skip_while(|&d| d == 0)
            .collect();
        if exp2 > 0 {
            digits = mul_pow2(&digits, exp2);
        }
        let scale = exp10 + 9 - frac_digits.len() as i64;
        let magnitude = capped_nanos(&digits, scale);

        // Go: a BinarySI value strictly between 0 and 1 becomes DecimalSI.
        let format = if format == Format::BinarySI && magnitude != 0 && magnitude < NANOS_PER_UNIT {
            Format::DecimalSI
        } else {
            format
        };
        let nanos = if negative { -magnitude } else { magnitude };
        Ok(Quantity { nanos, format })
    }

    /// Whole units, DecimalSI (Go `NewQuantity(units, DecimalSI)`).
    pub fn from_units(units: i64) -> Quantity {
        Quantity {
            nanos: i128::from(units) * NANOS_PER_UNIT,
            format: Format::DecimalSI,
        }
    }

    /// Thousandths of a unit, DecimalSI (Go `NewMilliQuantity(milli, DecimalSI)`).
    pub fn from_milli(milli: i64) -> Quantity {
        Quantity {
            nanos: i128::from(milli) * 1_000_000,
            format: Format::DecimalSI,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The same value, printed in another format (Go: assigning `q.Format`).
    pub fn with_format(self, format: Format) -> Quantity {
        Quantity { format, ..self }
    }

    /// `self + other` in `self`'s format (Go `Add`), bounded like a parsed quantity.
    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: (self.nanos + other.nanos).clamp(-MAX_NANOS, MAX_NANOS),
            format: self.format,
        }
    }

    /// `self - other` in `self`'s format (Go `Sub`), bounded like a parsed quantity.
    pub fn minus(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: (self.nanos - other.nanos).clamp(-MAX_NANOS, MAX_NANOS),
            format: self.format,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn is_positive(&self) -> bool {
        self.nanos > 0
    }

    /// The exact value times 10^9.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value as an `i64`, if it is a whole number that fits.
    pub fn as_whole_units(&self) -> Option<i64> {
        if self.nanos % NANOS_PER_UNIT != 0 {
            return None;
        }
        i64::try_from(self.nanos / NANOS_PER_UNIT).ok()
    }

    /// Go `MilliValue()`: value × 1000, rounded away from zero, saturating at the `i64` bounds.
    pub fn milli_value_ceil(&self) -> i64 {
        round_away_from_zero(self.nanos, 1_000_000)
    }

    /// Go `Value()`: the value rounded away from zero, saturating at the `i64` bounds.
    pub fn value_ceil(&self) -> i64 {
        round_away_from_zero(self.nanos, NANOS_PER_UNIT)
    }
}

/// Number of leading ASCII digits.
fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Cuts user input to a length that is safe to put into a log line or response.
fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Go's `suffixer.interpret`: the format, the power of ten and the power of two.
fn interpret_suffix(input: &str, suffix: &str) -> Result<(Format, i64, u32), QuantityError> {
    // Decimal first: "" is in both tables and means DecimalSI.
    if let Some(i) = DECIMAL_SUFFIXES.iter().position(|&known| known == suffix) {
        return Ok((Format::DecimalSI, 3 * i as i64 - 9, 0));
    }
    if let Some(i) = BINARY_SUFFIXES.iter().position(|&known| known == suffix) {
        return Ok((Format::BinarySI, 0, 10 * i as u32));
    }
    // `e<int>` / `E<int>`, read like Go's `strconv.ParseInt`: optional sign, ASCII digits.
    let unknown = || QuantityError::UnknownSuffix {
        input: echo(input),
        suffix: echo(suffix),
    };
    let exponent = suffix.strip_prefix(['e', 'E']).ok_or_else(unknown)?;
    let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if digits.is_empty() || leading_digits(digits) != digits.len() {
        return Err(unknown());
    }
    // Go reads 64 bits, then keeps only ±(2^31-1) because it negates an int32 scale.
    match exponent.parse::<i64>() {
        Ok(e) if (-MAX_EXPONENT..=MAX_EXPONENT).contains(&e) => Ok((Format::DecimalExponent, e, 0)),
        _ => Err(QuantityError::ExponentOutOfRange { input: echo(input) }),
    }
}

/// Multiplies big-endian decimal digits by 2^k (k ≤ 60): schoolbook, linear in the length.
fn mul_pow2(digits: &[u8], k: u32) -> Vec<u8> {
    let factor = 1u128 << k;
    let mut out = Vec::with_capacity(digits.len() + 20);
    let mut carry = 0u128;
    for &d in digits.iter().rev() {
        let current = u128::from(d) * factor + carry;
        out.push((current % 10) as u8);
        carry = current / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    out
}

/// `digits × 10^scale` (no leading zeros in `digits`), rounded away from zero to a
/// whole number of nanos, then capped at [`MAX_NANOS`].
fn capped_nanos(digits: &[u8], scale: i64) -> i128 {
    if digits.is_empty() {
        return 0;
    }
    let len = digits.len() as i64;
    let int_len = len + scale; // digits before the decimal point
    if int_len > MAX_NANO_DIGITS {
        return MAX_NANOS;
    }
    // From here on the whole part has at most 28 digits, so i128 cannot overflow.
    let split = usize::try_from(int_len.clamp(0, len)).unwrap_or(0);
    let (whole, fraction) = digits.split_at(split);
    let mut value = whole.iter().fold(0i128, |acc, &d| acc * 10 + i128::from(d));
    if scale > 0 {
        value *= 10i128.pow(scale as u32);
    }
    if fraction.iter().any(|&d| d != 0) {
        value += 1;
    }
    value.min(MAX_NANOS)
}

fn round_away_from_zero(nanos: i128, per: i128) -> i64 {
    let (quotient, remainder) = (nanos / per, nanos % per);
    let rounded = quotient + remainder.signum();
    i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX })
}

impl fmt::Display for Quantity {
    /// Go's `Quantity.String()`: no fractional digits and the largest exponent
    /// (or suffix) that keeps the value exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.nanos < 0 {
            f.write_str("-")?;
        }
        let magnitude = self.nanos.unsigned_abs();
        let unit = NANOS_PER_UNIT as u128;
        // Go: BinarySI below 1024 in magnitude, or not whole, is written as DecimalSI.
        if self.format == Format::BinarySI
            && magnitude >= 1024 * unit
            && magnitude.is_multiple_of(unit)
        {
            let (mut units, mut power) = (magnitude / unit, 0);
            while units.is_multiple_of(1024) && power + 1 < BINARY_SUFFIXES.len() {
                units /= 1024;
                power += 1;
            }
            return write!(f, "{units}{}", BINARY_SUFFIXES[power]);
        }
        // Move factors of ten into the exponent, then back down to a multiple of three.
        let (mut mantissa, mut exponent) = (magnitude, -9i32);
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent += 1;
        }
        let down = exponent.rem_euclid(3);
        mantissa *= 10u128.pow(down as u32);
        exponent -= down;
        let si_suffix = usize::try_from((exponent + 9) / 3)
            .ok()
            .and_then(|i| DECIMAL_SUFFIXES.get(i));
        match (self.format, si_suffix) {
            (Format::DecimalExponent, _) if exponent == 0 => write!(f, "{mantissa}"),
            (Format::DecimalExponent, _) => write!(f, "{mantissa}e{exponent}"),
            (_, Some(suffix)) => write!(f, "{mantissa}{suffix}"),
            // Newer Go falls back to an exponent past "E" or below "n"; unreachable here.
            (_, None) => write!(f, "{mantissa}e{exponent}"),
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// Like Go's `UnmarshalJSON`: a string (surrounding whitespace trimmed) or a bare number.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl QuantityVisitor {
    fn parse<E: de::Error>(text: &str) -> Result<Quantity, E> {
        Quantity::parse(text).map_err(E::custom)
    }
}

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes quantity such as \"500m\" or \"1.5Gi\", or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        Self::parse(v.trim())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        Self::parse(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        Self::parse(&v.to_string())
    }

    /// Go parses the number's JSON text; `f64`'s `Display` is the shortest text that
    /// round-trips, never uses an exponent, and gives "NaN"/"inf" (rejected) otherwise.
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        Self::parse(&v.to_string())
    }
}

#[cfg(test)]
mod tests;
