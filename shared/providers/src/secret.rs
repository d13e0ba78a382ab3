//! One type for every credential (provider keys and tokens, webhook secrets): its `Debug` output
//! never shows it, it is compared in constant time, and reading it is spelled `expose`.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

#[derive(Clone, Debug)]
pub struct Secret(SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose().as_bytes().ct_eq(other.expose().as_bytes()).into()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(SecretString::from(s))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::from(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_in_debug_output_and_compares_by_value() {
        let s = Secret::from("tw-token-123");
        assert!(!format!("{s:?}").contains("tw-token-123"), "{s:?}");
        assert_eq!(s, Secret::from("tw-token-123".to_string()));
        assert_ne!(s, Secret::from("tw-token-124"));
        assert_eq!(s.expose(), "tw-token-123");
    }
}
