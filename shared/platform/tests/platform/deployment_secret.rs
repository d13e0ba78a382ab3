//! The deployment's credentials in one Secrets Manager secret (JSON), read at cold start and
//! filled one variable at a time — for real against moto_server at `SECRETSMANAGER_ENDPOINT`
//! (skipped with the reason printed when it is unset).

use platform::{Config, DeploymentSecret, DeploymentSecretError};

#[tokio::test]
async fn functions_read_their_credentials_from_the_deployment_secret() {
    let Some((client, endpoint)) = platform::testing::secrets_manager_on_moto("functions_read_their_credentials").await else { return };
    // as the SAM template creates it: an empty object, filled after the deploy
    let name = format!("outdial-credentials-{}", uuid::Uuid::now_v7().simple());
    let arn = client.create_secret().name(&name).secret_string("{}").send().await.unwrap().arn.unwrap();

    DeploymentSecret::set(&arn, Some(&endpoint), "TWILIO_AUTH_TOKEN", "twilio-token").await.unwrap();
    let both = DeploymentSecret::set(&name, Some(&endpoint), "VAPI_API_KEY", "vapi-key").await.unwrap();
    assert_eq!(both.variables().collect::<Vec<_>>(), ["TWILIO_AUTH_TOKEN", "VAPI_API_KEY"], "a set keeps the others");
    let stored = client.get_secret_value().secret_id(&arn).send().await.unwrap();
    assert_eq!(stored.secret_string(), Some(r#"{"TWILIO_AUTH_TOKEN":"twilio-token","VAPI_API_KEY":"vapi-key"}"#));

    let env = [
        ("OUTDIAL_SECRETS_ARN", arn.as_str()),
        ("SECRETSMANAGER_ENDPOINT", endpoint.as_str()),
        ("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000001"),
        // a plain variable never wins over the secret
        ("TWILIO_AUTH_TOKEN", "stale"),
    ];
    let config = Config::from_lookup_and_secret(|n| env.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())).await.unwrap();
    assert_eq!(config.webhooks.twilio_auth_token.as_ref().map(|s| s.expose().to_string()).as_deref(), Some("twilio-token"));
    assert!(config.providers.vapi.is_some(), "the Vapi account is configured from the secret");
    assert!(config.providers.elevenlabs.is_none(), "nothing the secret does not hold");

    // an empty value removes the variable
    let removed = DeploymentSecret::set(&arn, Some(&endpoint), "VAPI_API_KEY", "").await.unwrap();
    assert_eq!(removed.variables().collect::<Vec<_>>(), ["TWILIO_AUTH_TOKEN"]);
    assert_eq!(
        DeploymentSecret::set(&arn, Some(&endpoint), "TWILIO_AUTH_TOKN", "x").await.unwrap_err(),
        DeploymentSecretError::UnknownVariable("TWILIO_AUTH_TOKN".into())
    );

    // a secret someone filled by hand with a typo stops the cold start, naming what to fix
    client.put_secret_value().secret_id(&arn).secret_string(r#"{"RETEL_API_KEY":"k"}"#).send().await.unwrap();
    let err =
        Config::from_lookup_and_secret(|n| env.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())).await.unwrap_err().to_string();
    assert!(err.contains("OUTDIAL_SECRETS_ARN") && err.contains("RETEL_API_KEY"), "{err}");
    let missing = [("OUTDIAL_SECRETS_ARN", "outdial-no-such-secret"), ("SECRETSMANAGER_ENDPOINT", endpoint.as_str())];
    let err = Config::from_lookup_and_secret(|n| missing.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())).await.unwrap_err();
    assert!(err.to_string().contains("cannot be read"), "{err}");
}
