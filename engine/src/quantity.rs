//! Kubernetes resource quantities (`1Gi`, `2148Mi`, `1.5G`, `100M`, `1e3`, `500m`).
//!
//! A quantity is held exactly in nano-units (value x 10^9) so that `cpu: "1"` and
//! `cpu: "1000m"` compare equal, as the kubelet's QoS computation requires. `value()` rounds up
//! to a whole number the way `resource.Quantity.Value()` does.

use crate::error::{EngineError, Result};
use std::cmp::Ordering;
use std::fmt;

const NANO: i128 = 1_000_000_000;
/// Above this the value cannot be represented in nano-units without overflow risk.
const MAX_ABS_NANOS: i128 = i128::MAX / 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    BinarySI,
    DecimalSI,
    DecimalExponent,
}

#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    pub format: Format,
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

fn format_error(text: &str) -> EngineError {
    EngineError::Quantity(format!(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {}",
        crate::decode::shown(text)
    ))
}

fn too_large(text: &str) -> EngineError {
    EngineError::Quantity(format!(
        "quantity {} is too large: pymm reads quantities of up to 10^26",
        crate::decode::shown(text)
    ))
}

impl Quantity {
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
    };

    pub fn from_bytes(v: u64, format: Format) -> Quantity {
        Quantity {
            nanos: v as i128 * NANO,
            format,
        }
    }

    /// Parses the Kubernetes quantity syntax.
    pub fn parse(text: &str) -> Result<Quantity> {
        let b = text.as_bytes();
        if b.is_empty() {
            return Err(format_error(text));
        }
        let mut pos = 0;
        let mut negative = false;
        if b[0] == b'+' || b[0] == b'-' {
            negative = b[0] == b'-';
            pos = 1;
        }
        let int_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &text[int_start..pos];
        let mut frac_digits = "";
        if pos < b.len() && b[pos] == b'.' {
            pos += 1;
            let f = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &text[f..pos];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(format_error(text));
        }
        let suffix = &text[pos..];
        let (format, base, exp): (Format, i128, i32) = match suffix {
            "" => (Format::DecimalSI, 10, 0),
            "n" => (Format::DecimalSI, 10, -9),
            "u" => (Format::DecimalSI, 10, -6),
            "m" => (Format::DecimalSI, 10, -3),
            "k" => (Format::DecimalSI, 10, 3),
            "M" => (Format::DecimalSI, 10, 6),
            "G" => (Format::DecimalSI, 10, 9),
            "T" => (Format::DecimalSI, 10, 12),
            "P" => (Format::DecimalSI, 10, 15),
            "E" => (Format::DecimalSI, 10, 18),
            "Ki" => (Format::BinarySI, 2, 10),
            "Mi" => (Format::BinarySI, 2, 20),
            "Gi" => (Format::BinarySI, 2, 30),
            "Ti" => (Format::BinarySI, 2, 40),
            "Pi" => (Format::BinarySI, 2, 50),
            "Ei" => (Format::BinarySI, 2, 60),
            s if s.starts_with('e') || s.starts_with('E') => {
                let digits = &s[1..];
                let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
                if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format_error(text));
                }
                let e: i32 = digits.parse().map_err(|_| too_large(text))?;
                (Format::DecimalExponent, 10, e)
            }
            _ => return Err(format_error(text)),
        };
        // mantissa = int_digits.frac_digits as an integer scaled by 10^-len(frac)
        let digits: String = format!("{int_digits}{frac_digits}");
        let trimmed = digits.trim_start_matches('0');
        if trimmed.len() > 30 {
            return Err(too_large(text));
        }
        let mantissa: i128 = if trimmed.is_empty() {
            0
        } else {
            trimmed.parse().map_err(|_| too_large(text))?
        };
        let scale = frac_digits.len() as i32;
        // nanos = mantissa * base^exp * 10^9 / 10^scale, rounded up (toward +inf in magnitude
        // for positive values), exactly in integers where possible.
        let mut num: i128 = mantissa;
        let mut den: i128 = 1;
        let mul = |v: i128, by: i128| v.checked_mul(by).ok_or_else(|| too_large(text));
        if base == 2 {
            num = mul(num, 1i128 << exp)?;
        } else if exp >= 0 {
            if exp > 36 {
                if mantissa == 0 {
                    return Ok(Quantity { nanos: 0, format });
                }
                return Err(too_large(text));
            }
            num = mul(num, 10i128.pow(exp as u32))?;
        } else {
            let e = (-exp).min(60) as u32;
            if e > 36 {
                // Far below a nano-unit: any non-zero value rounds up to one nano.
                let nanos = if mantissa == 0 { 0 } else { 1 };
                return Ok(Quantity {
                    nanos: if negative { -nanos } else { nanos },
                    format,
                });
            }
            den = 10i128.pow(e);
        }
        num = mul(num, NANO)?;
        let s = 10i128.pow(scale.min(36) as u32);
        den = mul(den, s)?;
        let mut nanos = num / den;
        if num % den != 0 {
            nanos += 1;
        }
        if nanos > MAX_ABS_NANOS {
            return Err(too_large(text));
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }
    pub fn is_positive(&self) -> bool {
        self.nanos > 0
    }
    /// A whole number of units (`MilliValue() % 1000 == 0` for the values the API takes).
    pub fn is_whole(&self) -> bool {
        self.nanos % NANO == 0
    }

    /// `Quantity.Value()`: rounded up to a whole unit.
    pub fn value(&self) -> i128 {
        let whole = self.nanos.div_euclid(NANO);
        if self.nanos.rem_euclid(NANO) != 0 {
            whole + 1
        } else {
            whole
        }
    }

    /// The whole value as int64, as `Quantity.AsInt64` (None when it does not fit).
    pub fn as_i64(&self) -> Option<i64> {
        i64::try_from(self.value()).ok()
    }

    /// A byte count: non-negative and within uint64 (the kubelet stores sizes as uint64).
    pub fn bytes(&self) -> Result<u64> {
        if self.nanos < 0 {
            return Err(EngineError::Quantity(format!(
                "quantity {self} is negative; a size must be zero or more"
            )));
        }
        u64::try_from(self.value()).map_err(|_| {
            EngineError::Quantity(format!(
                "quantity {self} is too large: a size must be 0 to 18446744073709551615 bytes (16Ei - 1)"
            ))
        })
    }

    /// `Quantity.Add`: a zero receiver takes the format of the addend.
    pub fn add(&self, other: &Quantity) -> Quantity {
        let format = if self.nanos == 0 {
            other.format
        } else {
            self.format
        };
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format,
        }
    }
}

const BIN_SUFFIX: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
const DEC_SUFFIX: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];

/// The canonical text of a whole number of units, as `Quantity.String()` prints it.
fn canonical_integer(v: i128, format: Format) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    if a == 0 {
        return "0".into();
    }
    if format == Format::BinarySI && a >= 1024 {
        let mut k = 0;
        let mut n = a;
        while k < 6 && n % 1024 == 0 {
            n /= 1024;
            k += 1;
        }
        return format!("{sign}{n}{}", BIN_SUFFIX[k]);
    }
    let mut k = 0;
    let mut n = a;
    while k < 6 && n % 1000 == 0 {
        n /= 1000;
        k += 1;
    }
    if format == Format::DecimalExponent {
        if k == 0 {
            format!("{sign}{n}")
        } else {
            format!("{sign}{n}e{}", 3 * k)
        }
    } else {
        format!("{sign}{n}{}", DEC_SUFFIX[k])
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANO == 0 {
            return f.write_str(&canonical_integer(self.nanos / NANO, self.format));
        }
        // Fractional values print in the smallest decimal unit that holds them exactly.
        let (mut n, mut unit) = (self.nanos, "n");
        for u in ["u", "m"] {
            if n % 1000 == 0 {
                n /= 1000;
                unit = u;
            }
        }
        write!(f, "{n}{unit}")
    }
}

/// A byte count as a binary-SI quantity ("16Gi", "12800Mi"), for messages.
pub fn bytes_text(v: u64) -> String {
    Quantity::from_bytes(v, Format::BinarySI).to_string()
}

/// `hugepages-<size>` name of a page size given in bytes (2097152 -> `hugepages-2Mi`).
pub fn hugepage_resource_name(page_bytes: u64) -> String {
    format!(
        "hugepages-{}",
        canonical_integer(page_bytes as i128, Format::BinarySI)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> i128 {
        Quantity::parse(s).unwrap().value()
    }

    #[test]
    fn parses_every_suffix_family() {
        assert_eq!(v("1Gi"), 1 << 30);
        assert_eq!(v("2148Mi"), 2148 << 20);
        assert_eq!(v("1.5G"), 1_500_000_000);
        assert_eq!(v("100M"), 100_000_000);
        assert_eq!(v("1e3"), 1000);
        assert_eq!(v("1E3"), 1000);
        assert_eq!(v("128"), 128);
        assert_eq!(v("0.5Ki"), 512);
        assert_eq!(v(".5"), 1);
        assert_eq!(v("1.1"), 2, "fractions round up like Quantity.Value()");
        assert_eq!(v("500m"), 1);
        assert_eq!(v("-1Gi"), -(1 << 30));
        assert_eq!(v("+3k"), 3000);
        assert_eq!(v("1E"), 1_000_000_000_000_000_000);
    }

    #[test]
    fn rejects_malformed_and_huge() {
        for bad in [
            "", "abc", "1K", "1 Gi", "Gi", ".", "1e", "1e+", "1.2.3", "--1", "1Gib",
        ] {
            assert!(
                matches!(Quantity::parse(bad), Err(EngineError::Quantity(_))),
                "{bad:?} should not parse"
            );
        }
        assert!(Quantity::parse("99999999999999999999999999999999999Ei").is_err());
        assert!(Quantity::parse("1e40").is_err());
        assert!(Quantity::parse("-1Gi").unwrap().bytes().is_err());
        assert!(Quantity::parse("16Ei").unwrap().bytes().is_err());
    }

    #[test]
    fn exact_comparison_across_formats() {
        assert_eq!(
            Quantity::parse("1").unwrap(),
            Quantity::parse("1000m").unwrap()
        );
        assert_eq!(
            Quantity::parse("1Ki").unwrap(),
            Quantity::parse("1024").unwrap()
        );
        assert!(Quantity::parse("1G").unwrap() < Quantity::parse("1Gi").unwrap());
    }

    #[test]
    fn canonical_strings() {
        let s = |t: &str| Quantity::parse(t).unwrap().to_string();
        assert_eq!(s("1024Mi"), "1Gi");
        assert_eq!(s("993Mi"), "993Mi");
        assert_eq!(s("12"), "12");
        assert_eq!(s("0"), "0");
        assert_eq!(s("1000"), "1k");
        assert_eq!(s("1e3"), "1e3");
        assert_eq!(s("512Ki"), "512Ki");
        assert_eq!(s("0.5Ki"), "512");
        assert_eq!(s("1.5Gi"), "1536Mi");
        assert_eq!(s("500m"), "500m");
        assert_eq!(hugepage_resource_name(2 << 20), "hugepages-2Mi");
        assert_eq!(hugepage_resource_name(1 << 30), "hugepages-1Gi");
    }

    #[test]
    fn sum_keeps_first_nonzero_format() {
        let a = Quantity::parse("1Gi").unwrap();
        let b = Quantity::parse("2Gi").unwrap();
        assert_eq!(Quantity::ZERO.add(&a).add(&b).to_string(), "3Gi");
    }
}
