//! The sealing key in AWS: a Secrets Manager secret (as the SAM template generates it) read at
//! cold start, for real against moto_server at `SECRETSMANAGER_ENDPOINT` (skipped with the reason
//! printed when it is unset).

use platform::{SecretBox, sealed::SealError};

fn config_of(vars: &[(&str, &str)]) -> platform::Config {
    platform::Config::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())).unwrap()
}

#[tokio::test]
async fn the_key_comes_from_secrets_manager_and_opens_what_it_sealed() {
    let Some((client, endpoint)) = platform::testing::secrets_manager_on_moto("the_key_comes_from_secrets_manager").await else { return };
    let name = format!("outdial-key-{}", uuid::Uuid::now_v7().simple());
    // what GenerateSecretString makes: 64 letters and digits
    let generated: String = (0..64).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    let arn = client.create_secret().name(&name).secret_string(&generated).send().await.unwrap().arn.unwrap();

    let mut config = config_of(&[("OUTDIAL_SECRET_KEY_ARN", &arn), ("SECRETSMANAGER_ENDPOINT", &endpoint)]);
    assert!(config.secrets.is_none(), "nothing until it is loaded");
    config.load_secret_key().await.unwrap();
    let sealed = config.secrets.as_ref().unwrap().seal("pit-secret", "conn_1");
    // another cold start reads the same secret: it opens what the first sealed
    let again = SecretBox::from_secrets_manager(&arn, Some(&endpoint)).await.unwrap();
    assert_eq!(again.open(&sealed, "conn_1").unwrap(), "pit-secret");
    assert_eq!(SecretBox::ephemeral().open(&sealed, "conn_1"), Err(SealError::Unopenable));

    let missing = SecretBox::from_secrets_manager(&format!("{arn}-gone"), Some(&endpoint)).await.unwrap_err();
    assert!(matches!(missing, SealError::Unavailable { .. }), "{missing}");
    let mut broken = config_of(&[
        ("OUTDIAL_SECRET_KEY_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope"),
        ("SECRETSMANAGER_ENDPOINT", &endpoint),
    ]);
    let err = broken.load_secret_key().await.unwrap_err().to_string();
    assert!(err.contains("OUTDIAL_SECRET_KEY_ARN"), "the variable to fix is named: {err}");
}

#[test]
fn key_secrets_are_base64_keys_or_long_random_strings() {
    let key = SecretBox::from_secret_string("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let same = SecretBox::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    assert_eq!(same.open(&key.seal("s", "r"), "r").unwrap(), "s");
    let long = "Zq3v9XkP0b7LmN2c8RtY4wA6eH1jU5sGdFiOpQlK";
    let derived = SecretBox::from_secret_string(long).unwrap();
    assert_eq!(
        SecretBox::from_secret_string(long).unwrap().open(&derived.seal("s", "r"), "r").unwrap(),
        "s",
        "the same text, the same key"
    );
    assert_eq!(SecretBox::from_secret_string("short").unwrap_err(), SealError::WeakSecret);
}
