//! The deployment's provider credentials in AWS: one Secrets Manager secret holding a JSON object
//! of variable names to values (`OUTDIAL_SECRETS_ARN`), read once at a function's cold start and
//! filled by `outdial secrets set` — so no credential sits in a plain Lambda environment variable.

use std::collections::BTreeMap;

/// The variables the deployment secret may hold: every credential outdial reads.
pub const SECRET_VARIABLES: &[&str] = &[
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "VAPI_API_KEY",
    "VAPI_WEBHOOK_SECRET",
    "VAPI_WEBHOOK_HMAC_SECRET",
    "ELEVENLABS_API_KEY",
    "ELEVENLABS_WEBHOOK_SECRET",
    "RETELL_API_KEY",
    "CALCOM_API_KEY",
    "OUTDIAL_METRICS_TOKEN",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeploymentSecretError {
    #[error("the deployment secret {id} cannot be read: {reason}")]
    Unavailable { id: String, reason: String },
    #[error("the deployment secret {id} cannot be written: {reason}")]
    Unwritable { id: String, reason: String },
    #[error("the deployment secret {id} is not a JSON object of strings: {reason}")]
    Malformed { id: String, reason: String },
    #[error("{0} is not a credential outdial reads from the deployment secret; it holds {list}", list = SECRET_VARIABLES.join(", "))]
    UnknownVariable(String),
}

/// The parsed secret: each credential by its variable's name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DeploymentSecret {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for DeploymentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentSecret").field("variables", &self.values.keys().collect::<Vec<_>>()).finish()
    }
}

impl DeploymentSecret {
    /// Reads the secret's JSON; a name outdial does not read is refused, so a typo is found at
    /// the cold start instead of as a provider that silently has no key.
    pub fn parse(id: &str, text: &str) -> Result<Self, DeploymentSecretError> {
        let malformed = |reason: String| DeploymentSecretError::Malformed { id: id.to_string(), reason };
        let values: BTreeMap<String, String> =
            if text.trim().is_empty() { BTreeMap::new() } else { serde_json::from_str(text).map_err(|e| malformed(e.to_string()))? };
        if let Some(unknown) = values.keys().find(|name| !SECRET_VARIABLES.contains(&name.as_str())) {
            return Err(DeploymentSecretError::UnknownVariable(unknown.clone()));
        }
        Ok(Self { values })
    }

    /// The credential `name`, None when the secret does not hold it (or holds it empty).
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }

    /// The variables it holds, without their values.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Reads the secret from Secrets Manager (`endpoint`: moto_server).
    pub async fn fetch(id: &str, endpoint: Option<&str>) -> Result<Self, DeploymentSecretError> {
        Self::read(&crate::aws::secrets_manager(endpoint).await, id).await
    }

    async fn read(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<Self, DeploymentSecretError> {
        let text = crate::aws::secret_string(client, id)
            .await
            .map_err(|reason| DeploymentSecretError::Unavailable { id: id.to_string(), reason })?;
        Self::parse(id, text.as_deref().unwrap_or_default())
    }

    /// Sets one credential in the secret, keeping the others (a new version of the secret); an
    /// empty value removes it.
    pub async fn set(id: &str, endpoint: Option<&str>, name: &str, value: &str) -> Result<Self, DeploymentSecretError> {
        if !SECRET_VARIABLES.contains(&name) {
            return Err(DeploymentSecretError::UnknownVariable(name.to_string()));
        }
        let client = crate::aws::secrets_manager(endpoint).await;
        let mut secret = Self::read(&client, id).await?;
        if value.is_empty() {
            secret.values.remove(name);
        } else {
            secret.values.insert(name.to_string(), value.to_string());
        }
        let text = serde_json::to_string(&secret.values)
            .map_err(|e| DeploymentSecretError::Malformed { id: id.to_string(), reason: e.to_string() })?;
        client.put_secret_value().secret_id(id).secret_string(text).send().await.map_err(|e| DeploymentSecretError::Unwritable {
            id: id.to_string(),
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credentials_outdial_reads_are_accepted() {
        let secret = DeploymentSecret::parse("s", r#"{"TWILIO_AUTH_TOKEN":"tok","VAPI_API_KEY":""}"#).unwrap();
        assert_eq!(secret.get("TWILIO_AUTH_TOKEN").as_deref(), Some("tok"));
        assert_eq!(secret.get("VAPI_API_KEY"), None, "empty is unset");
        assert_eq!(DeploymentSecret::parse("s", "").unwrap(), DeploymentSecret::default(), "a new secret may be empty");
        assert_eq!(
            DeploymentSecret::parse("s", r#"{"TWILIO_AUTH_TOKN":"x"}"#),
            Err(DeploymentSecretError::UnknownVariable("TWILIO_AUTH_TOKN".into()))
        );
        assert!(matches!(DeploymentSecret::parse("s", "[1]"), Err(DeploymentSecretError::Malformed { .. })));
        assert!(!format!("{secret:?}").contains("tok"), "values never reach a log line");
    }
}
