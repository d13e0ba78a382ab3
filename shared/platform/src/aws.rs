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
