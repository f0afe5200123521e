//! DynamoDB's number: a decimal of at most 38 significant digits, with a magnitude between
//! 1E-130 and 9.99…E+125 (or zero). Kept canonical — no leading or trailing zeros — so equal
//! numbers have equal text ("1.50" and "15E-1" are both "1.5") and equal keys.

use bigdecimal::BigDecimal;
use bigdecimal::num_bigint::Sign;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The most significant digits a number may have.
pub const MAX_DIGITS: usize = 38;
/// The exponent range of the leading digit: 1E-130 ..= 9.99…E+125.
const MIN_EXPONENT: i64 = -130;
const MAX_EXPONENT: i64 = 125;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("The parameter cannot be converted to a numeric value: {0}")]
    NotANumber(String),
    #[error("Attempting to store more than 38 significant digits in a Number")]
    TooPrecise,
    #[error(
        "Number overflow. Attempting to store a number with magnitude larger than supported range"
    )]
    Overflow,
    #[error(
        "Number underflow. Attempting to store a number with magnitude smaller than supported range"
    )]
    Underflow,
}

/// A valid DynamoDB number.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    /// The significant digits, ASCII, without leading or trailing zeros; empty for zero.
    digits: Vec<u8>,
    /// The power of ten of the first digit (1.5 has 0, 150 has 2).
    exponent: i64,
}

impl Number {
    pub fn zero() -> Number {
        Number {
            negative: false,
            digits: Vec::new(),
            exponent: 0,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Parse DynamoDB's number text: an optional sign, digits with an optional point, and an
    /// optional exponent.
    pub fn parse(text: &str) -> Result<Number, NumberError> {
        let not_a_number = || NumberError::NotANumber(text.to_owned());
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => (mantissa, Some(exponent)),
            None => (rest, None),
        };
        let (whole, fraction) = match mantissa.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction)
        {
            return Err(not_a_number());
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !all_digits(digits) {
                    return Err(not_a_number());
                }
                // Far beyond any valid exponent is out of range either way.
                e.parse::<i64>().unwrap_or(if e.starts_with('-') {
                    i64::MIN / 2
                } else {
                    i64::MAX / 2
                })
            }
        };
        let mut digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
        let leading = digits.iter().take_while(|&&d| d == b'0').count();
        digits.drain(..leading);
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Ok(Number::zero());
        }
        let exponent = exponent
            .saturating_add(whole.len() as i64)
            .saturating_sub(leading as i64 + 1);
        Number::checked(negative, digits, exponent)
    }

    fn checked(negative: bool, digits: Vec<u8>, exponent: i64) -> Result<Number, NumberError> {
        if digits.is_empty() {
            return Ok(Number::zero());
        }
        if exponent > MAX_EXPONENT {
            return Err(NumberError::Overflow);
        }
        if exponent < MIN_EXPONENT {
            return Err(NumberError::Underflow);
        }
        if digits.len() > MAX_DIGITS {
            return Err(NumberError::TooPrecise);
        }
        Ok(Number {
            negative,
            digits,
            exponent,
        })
    }

    fn to_big(&self) -> BigDecimal {
        if self.is_zero() {
            return BigDecimal::from(0);
        }
        let text = format!(
            "{}{}E{}",
            if self.negative { "-" } else { "" },
            std::str::from_utf8(&self.digits).unwrap_or("0"),
            self.exponent + 1 - self.digits.len() as i64
        );
        BigDecimal::from_str(&text).unwrap_or_default()
    }

    fn from_big(value: &BigDecimal) -> Result<Number, NumberError> {
        let (int, scale) = value.normalized().into_bigint_and_exponent();
        let (sign, magnitude) = int.into_parts();
        let digits = magnitude.to_string().into_bytes();
        if sign == Sign::NoSign || digits == b"0" {
            return Ok(Number::zero());
        }
        // value = digits × 10^-scale; the first digit's power is len - 1 - scale.
        let exponent = digits.len() as i64 - 1 - scale;
        Number::checked(sign == Sign::Minus, digits, exponent)
    }

    pub fn add(&self, other: &Number) -> Result<Number, NumberError> {
        Number::from_big(&(self.to_big() + other.to_big()))
    }

    pub fn sub(&self, other: &Number) -> Result<Number, NumberError> {
        Number::from_big(&(self.to_big() - other.to_big()))
    }

    /// The number as bytes whose byte order is the numbers' order, for keys.
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.digits.len() + 4);
        if self.is_zero() {
            out.push(0x02);
            return out;
        }
        // Biased so every valid exponent is a positive u16 in order.
        let biased = (self.exponent - MIN_EXPONENT + 1) as u16;
        if self.negative {
            out.push(0x01);
            out.extend_from_slice(&(!biased).to_be_bytes());
            out.extend(self.digits.iter().map(|d| !d));
            // A terminator above every inverted digit: -1.2 (shorter) sorts after -1.23.
            out.push(0xFF);
        } else {
            out.push(0x03);
            out.extend_from_slice(&biased.to_be_bytes());
            out.extend_from_slice(&self.digits);
        }
        out
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Number) -> Ordering {
        self.key_bytes().cmp(&other.key_bytes())
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Number) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Number {
    /// Plain notation, as DynamoDB answers: `150`, `1.5`, `0.015`, `-2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        let digits = std::str::from_utf8(&self.digits).map_err(|_| fmt::Error)?;
        let point = self.exponent + 1;
        if point <= 0 {
            f.write_str("0.")?;
            for _ in 0..-point {
                f.write_str("0")?;
            }
            f.write_str(digits)
        } else if point as usize >= digits.len() {
            f.write_str(digits)?;
            for _ in 0..point as usize - digits.len() {
                f.write_str("0")?;
            }
            Ok(())
        } else {
            let (whole, fraction) = digits.split_at(point as usize);
            write!(f, "{whole}.{fraction}")
        }
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        Number::parse(text).unwrap()
    }

    #[test]
    fn numbers_are_canonical() {
        for (text, canonical) in [
            ("0", "0"),
            ("-0", "0"),
            ("0.000", "0"),
            ("00150", "150"),
            ("1.50", "1.5"),
            ("15E-1", "1.5"),
            ("+7", "7"),
            (".5", "0.5"),
            ("5.", "5"),
            ("-0.0015", "-0.0015"),
            ("1e3", "1000"),
            (
                "12345678901234567890123456789012345678",
                "12345678901234567890123456789012345678",
            ),
            ("1E125", &format!("1{}", "0".repeat(125))),
            ("1E-130", &format!("0.{}1", "0".repeat(129))),
            // Trailing zeros are not significant: 38 digits and zeros after them fit.
            (
                "123456789012345678901234567890123456780000",
                "123456789012345678901234567890123456780000",
            ),
        ] {
            assert_eq!(n(text).to_string(), canonical, "{text}");
        }
        assert_eq!(n("1.50"), n("15e-1"));
        assert_eq!(n("1.50").key_bytes(), n("1.5").key_bytes());
    }

    #[test]
    fn invalid_numbers_are_refused_as_dynamodb_refuses_them() {
        for text in [
            "", "abc", "1.2.3", "1e", "e5", "--1", "1e+", " 1", "0x10", ".", "NaN", "Infinity",
        ] {
            assert_eq!(
                Number::parse(text),
                Err(NumberError::NotANumber(text.to_owned())),
                "{text:?}"
            );
        }
        assert_eq!(
            Number::parse("123456789012345678901234567890123456789"),
            Err(NumberError::TooPrecise)
        );
        assert_eq!(Number::parse("1E126"), Err(NumberError::Overflow));
        assert_eq!(Number::parse("-1E126"), Err(NumberError::Overflow));
        assert_eq!(Number::parse("1E-131"), Err(NumberError::Underflow));
        assert_eq!(
            Number::parse("1E99999999999999999999"),
            Err(NumberError::Overflow)
        );
        assert_eq!(
            Number::parse("0E99999999999999999999").unwrap(),
            Number::zero()
        );
    }

    #[test]
    fn key_bytes_sort_as_numbers() {
        let mut numbers: Vec<Number> = [
            "-1E125", "-100", "-1.23", "-1.2", "-1", "-0.5", "-1E-130", "0", "1E-130", "0.5", "1",
            "1.2", "1.23", "2", "10", "100", "1E125",
        ]
        .iter()
        .map(|t| n(t))
        .collect();
        let expected = numbers.clone();
        numbers.reverse();
        numbers.sort_by_key(Number::key_bytes);
        assert_eq!(numbers, expected);
    }

    #[test]
    fn arithmetic_is_exact_within_38_digits() {
        assert_eq!(n("0.1").add(&n("0.2")).unwrap().to_string(), "0.3");
        assert_eq!(n("5").sub(&n("7.5")).unwrap().to_string(), "-2.5");
        assert_eq!(n("1.5").sub(&n("1.5")).unwrap(), Number::zero());
        let big = n("99999999999999999999999999999999999999");
        assert_eq!(
            big.add(&n("1")).unwrap().to_string(),
            format!("1{}", "0".repeat(38))
        );
        assert_eq!(big.add(&n("0.1")), Err(NumberError::TooPrecise));
        assert_eq!(n("9.9E125").add(&n("1E125")), Err(NumberError::Overflow));
    }
}
