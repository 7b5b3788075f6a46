//! Kubernetes resource quantities (TEMPORARY minimal version, replaced by the exact port).
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    BinarySI,
    DecimalSI,
    DecimalExponent,
}

#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a Kubernetes quantity; use a number with an optional suffix such as 500m, 2, 1.5Gi or 1e3"
)]
pub struct QuantityError {
    input: String,
}

impl Quantity {
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
    };

    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let err = || QuantityError {
            input: s.chars().take(64).collect(),
        };
        let suffixes: [(&str, i128, Format); 13] = [
            ("Ki", 1 << 10, Format::BinarySI),
            ("Mi", 1 << 20, Format::BinarySI),
            ("Gi", 1 << 30, Format::BinarySI),
            ("Ti", 1 << 40, Format::BinarySI),
            ("Pi", 1 << 50, Format::BinarySI),
            ("Ei", 1 << 60, Format::BinarySI),
            ("m", -3, Format::DecimalSI),
            ("k", 3, Format::DecimalSI),
            ("M", 6, Format::DecimalSI),
            ("G", 9, Format::DecimalSI),
            ("T", 12, Format::DecimalSI),
            ("P", 15, Format::DecimalSI),
            ("E", 18, Format::DecimalSI),
        ];
        let (num, mult, pow10, format) = suffixes
            .iter()
            .find_map(|(suf, m, f)| {
                s.strip_suffix(suf).map(|n| match f {
                    Format::BinarySI => (n, *m, 0i32, *f),
                    _ => (n, 1, *m as i32, *f),
                })
            })
            .unwrap_or((s, 1, 0, Format::DecimalSI));
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return Err(err());
        }
        let digits: i128 = format!("{int}{frac}").parse().map_err(|_| err())?;
        let scale = 9 + pow10 - frac.len() as i32;
        let nanos = if scale >= 0 {
            digits * 10i128.pow(scale as u32)
        } else {
            let d = 10i128.pow((-scale) as u32);
            (digits + d - 1) / d
        };
        Ok(Quantity {
            nanos: nanos * mult,
            format,
        })
    }
    pub fn from_units(units: i64) -> Quantity {
        Quantity {
            nanos: units as i128 * 1_000_000_000,
            format: Format::DecimalSI,
        }
    }
    pub fn from_milli(milli: i64) -> Quantity {
        Quantity {
            nanos: milli as i128 * 1_000_000,
            format: Format::DecimalSI,
        }
    }
    pub fn format(&self) -> Format {
        self.format
    }
    pub fn with_format(self, format: Format) -> Quantity {
        Quantity { format, ..self }
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
    pub fn nanos(&self) -> i128 {
        self.nanos
    }
    pub fn as_whole_units(&self) -> Option<i64> {
        (self.nanos % 1_000_000_000 == 0).then(|| (self.nanos / 1_000_000_000) as i64)
    }
    pub fn milli_value_ceil(&self) -> i64 {
        (self.nanos / 1_000_000) as i64
    }
    pub fn value_ceil(&self) -> i64 {
        (self.nanos / 1_000_000_000) as i64
    }
}

impl std::str::FromStr for Quantity {
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
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}
impl std::hash::Hash for Quantity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.nanos.hash(state)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySI
            && self.nanos % 1_000_000_000 == 0
            && self.nanos.abs() >= 1024 * 1_000_000_000
        {
            let mut v = self.nanos / 1_000_000_000;
            let mut i = 0;
            while v % 1024 == 0 && i < 6 {
                v /= 1024;
                i += 1;
            }
            return write!(f, "{v}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i]);
        }
        let mut v = self.nanos;
        let mut i = 0;
        while v % 1000 == 0 && i < 9 {
            v /= 1000;
            i += 1;
        }
        write!(
            f,
            "{v}{}",
            ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"][i]
        )
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Quantity::parse(&s).map_err(serde::de::Error::custom)
    }
}
