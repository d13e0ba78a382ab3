//! Money as a decimal (never a float), in US dollars as the providers report it.

use crate::ParseError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::{fmt, ops::Add, str::FromStr};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "serde_json::Value", into = "String")]
#[schema(value_type = String, example = "0.0725")]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Accepts a decimal string (`"0.0725"`); refuses negative amounts and more than 6 decimals.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let amount =
            Decimal::from_str(input.trim()).map_err(|_| ParseError::new("amount", format!("{input:?} is not a decimal amount")))?;
        Self::from_decimal(amount)
    }

    pub fn from_decimal(amount: Decimal) -> Result<Self, ParseError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(ParseError::new("amount", format!("{amount} is negative")));
        }
        if amount.scale() > 6 {
            return Err(ParseError::new("amount", format!("{amount} has more than 6 decimals")));
        }
        Ok(Self(amount.normalize()))
    }

    pub fn amount(&self) -> Decimal {
        self.0
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

/// Providers send costs as JSON numbers (`0.0725`) or strings; both are read exactly.
impl TryFrom<serde_json::Value> for Money {
    type Error = ParseError;
    fn try_from(v: serde_json::Value) -> Result<Self, ParseError> {
        match v {
            serde_json::Value::String(s) => Self::parse(&s),
            serde_json::Value::Number(n) => Self::parse(&n.to_string()),
            other => Err(ParseError::new("amount", format!("{other} is not an amount"))),
        }
    }
}

impl From<Money> for String {
    fn from(m: Money) -> String {
        m.0.to_string()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact() {
        let a = Money::parse("0.1").unwrap();
        let b = Money::parse("0.2").unwrap();
        assert_eq!((a + b).to_string(), "0.3");
        assert_eq!(serde_json::from_str::<Money>("0.0725").unwrap(), Money::parse("0.0725").unwrap());
        assert_eq!(serde_json::to_string(&Money::parse("1.50").unwrap()).unwrap(), "\"1.5\"");
        assert!(Money::parse("-1").is_err());
        assert!(Money::parse("abc").is_err());
        assert!(Money::parse("0.0000001").is_err());
    }
}
