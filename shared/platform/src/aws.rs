//! The AWS SDK configuration every adapter loads: the region from the environment (us-east-1 when
//! none is set) and, for moto_server or LocalStack, an endpoint override.

pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let region = aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1");
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// A Secrets Manager client (`endpoint`: moto_server).
pub async fn secrets_manager(endpoint: Option<&str>) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk_config(endpoint).await)
}

/// The text of secret `id` (None when it holds binary only), or why it cannot be read.
pub async fn secret_string(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<Option<String>, String> {
    let answer = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())?;
    Ok(answer.secret_string)
}
