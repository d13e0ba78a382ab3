//! Secrets kept at rest (CRM tokens, webhook signing secrets): sealed with AES-256-GCM under the
//! deployment's key, bound to the record they belong to, never stored or logged in the clear.
//! The key is `OUTDIAL_SECRET_KEY` (32 bytes, base64), or locally a key file beside the database,
//! created on first use.

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use std::{fmt, path::Path, sync::Arc};

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("OUTDIAL_SECRET_KEY must be 32 bytes in base64 (make one with `openssl rand -base64 32`)")]
    BadKey,
    #[error("the key file {0} could not be read or created: {1}")]
    KeyFile(String, String),
    /// Tampered with, bound to another record, or sealed under another key.
    #[error("a sealed secret could not be opened: it was sealed under another key, for another record, or changed")]
    Unopenable,
}

/// The deployment's sealing key. Cheap to clone; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretBox {
    key: Arc<LessSafeKey>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl PartialEq for SecretBox {
    /// Boxes are compared by what they can open, which a test does by sealing; configurations compare equal.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl SecretBox {
    const KEY_LEN: usize = 32;

    /// From 32 bytes in base64 (`OUTDIAL_SECRET_KEY`).
    pub fn from_base64(key: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| SealError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != Self::KEY_LEN {
            return Err(SealError::BadKey);
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self { key: Arc::new(LessSafeKey::new(key)) })
    }

    /// The key in `path`, written there (readable by its owner only) the first time.
    pub fn from_key_file(path: &Path) -> Result<Self, SealError> {
        let failed = |e: std::io::Error| SealError::KeyFile(path.display().to_string(), e.to_string());
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; Self::KEY_LEN];
                SystemRandom::new().fill(&mut key).map_err(|_| SealError::BadKey)?;
                write_private(path, STANDARD.encode(key).as_bytes()).map_err(failed)?;
                Self::from_bytes(&key)
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// A key that lives as long as the process: for tests and the in-memory store.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; Self::KEY_LEN];
        SystemRandom::new().fill(&mut key).expect("the system's random source works");
        Self::from_bytes(&key).expect("32 bytes make a key")
    }

    /// `secret` sealed for the record `bound_to` (its id): base64 of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, secret: &str, bound_to: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the system's random source works");
        let mut sealed = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(bound_to.as_bytes()), &mut sealed)
            .expect("AES-GCM seals any secret shorter than 64 GiB");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        STANDARD.encode(out)
    }

    /// The secret sealed for `bound_to`.
    pub fn open(&self, sealed: &str, bound_to: &str) -> Result<String, SealError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| SealError::Unopenable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Unopenable);
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Unopenable)?;
        let mut rest = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(bound_to.as_bytes()), &mut rest).map_err(|_| SealError::Unopenable)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Unopenable)
    }
}

/// A new webhook signing secret: `whsec_` and 32 random bytes, base64url.
pub fn new_signing_secret() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("the system's random source works");
    format!("whsec_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_record_under_its_key() {
        let secrets = SecretBox::ephemeral();
        let sealed = secrets.seal("pit-token-123", "crm_1");
        assert!(!sealed.contains("pit-token-123"));
        assert_ne!(sealed, secrets.seal("pit-token-123", "crm_1"), "a fresh nonce each time");
        assert_eq!(secrets.open(&sealed, "crm_1").unwrap(), "pit-token-123");
        assert_eq!(secrets.open(&sealed, "crm_2"), Err(SealError::Unopenable), "bound to its record");
        assert_eq!(SecretBox::ephemeral().open(&sealed, "crm_1"), Err(SealError::Unopenable), "another key");
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(secrets.open(&STANDARD.encode(tampered), "crm_1"), Err(SealError::Unopenable));
        assert_eq!(SecretBox::from_base64("c2hvcnQ=").err(), Some(SealError::BadKey));
    }

    #[test]
    fn the_local_key_file_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outdial.key");
        let sealed = SecretBox::from_key_file(&path).unwrap().seal("s", "r");
        assert_eq!(SecretBox::from_key_file(&path).unwrap().open(&sealed, "r").unwrap(), "s");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
