//! A thin client of the HTTP API for the command line: the same routes against the local stack
//! or a deployed URL, problems shown as the server phrased them.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with a problem: its own title, status and detail (and per-field reasons).
    #[error("{title} ({status}): {detail}")]
    Problem { status: u16, title: String, detail: String },
    #[error("could not reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("unexpected answer from {url} ({status}): {body}")]
    Unexpected { url: String, status: u16, body: String },
}

/// One API base URL and the key to it.
pub struct ApiClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, key: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), key: key.to_string(), http: reqwest::Client::new() }
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        self.send(self.http.get(self.url(path)).query(query), path).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(self.http.post(self.url(path)).json(body), path).await
    }

    pub async fn put(&self, path: &str) -> Result<Value, ClientError> {
        self.send(self.http.put(self.url(path)), path).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(self.http.delete(self.url(path)), path).await
    }

    /// Posts a body streamed from elsewhere (a file being read), of `content_type`.
    pub async fn post_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<Value, ClientError> {
        let request = self.http.post(self.url(path)).query(query).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.send(request, path).await
    }

    /// Posts with a query and no body.
    pub async fn post_query(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        self.send(self.http.post(self.url(path)).query(query), path).await
    }

    /// PUTs `size` bytes streamed from a file to an upload URL the API handed out (its signature
    /// is its authority: no API key goes with it).
    pub async fn put_upload(&self, upload_url: &str, body: reqwest::Body, size: u64) -> Result<(), ClientError> {
        let unreachable =
            |reason: String| ClientError::Unreachable { url: upload_url.split('?').next().unwrap_or_default().to_string(), reason };
        let response = self
            .http
            .put(upload_url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<Value>(&text) {
            Ok(problem) if problem.get("title").is_some() => problem_error(status, &problem),
            _ => ClientError::Unexpected { url: "the upload URL".into(), status, body: text.chars().take(500).collect() },
        })
    }

    /// Whether the API is on this machine (the local stack), where one request takes a file of any size.
    pub fn is_local(&self) -> bool {
        reqwest::Url::parse(&self.base).is_ok_and(|url| is_loopback(&url))
    }

    /// Every item of a list route, following `nextCursor` to the end.
    pub async fn get_all(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut query = query.to_vec();
        loop {
            let mut page = self.get(path, &query).await?;
            if let Some(Value::Array(more)) = page.get_mut("items").map(Value::take) {
                items.extend(more);
            }
            match page["nextCursor"].as_str() {
                Some(cursor) => {
                    query.retain(|(k, _)| *k != "cursor");
                    query.push(("cursor", cursor.to_string()));
                }
                None => return Ok(items),
            }
        }
    }

    /// Streams a non-JSON answer (a CSV) into `out` chunk by chunk, calling `progress` with the
    /// bytes written so far; how many there were.
    pub async fn download(
        &self,
        path: &str,
        query: &[(&str, String)],
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
        progress: impl Fn(u64),
    ) -> Result<u64, ClientError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let url = self.url(path);
        let unreachable = |e: &dyn std::fmt::Display| ClientError::Unreachable { url: url.clone(), reason: e.to_string() };
        let response = self.http.get(&url).query(query).bearer_auth(&self.key).send().await.map_err(|e| unreachable(&e.without_url()))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = response.text().await.unwrap_or_default();
            return Err(match serde_json::from_str::<Value>(&text) {
                Ok(problem) if problem.get("title").is_some() => problem_error(status, &problem),
                _ => ClientError::Unexpected { url, status, body: text.chars().take(500).collect() },
            });
        }
        let mut written = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| unreachable(&e))?;
            out.write_all(&chunk).await.map_err(|e| unreachable(&e))?;
            written += chunk.len() as u64;
            progress(written);
        }
        out.flush().await.map_err(|e| unreachable(&e))?;
        Ok(written)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: url.clone(), reason: e.without_url().to_string() })?;
        let status = response.status().as_u16();
        let is_problem =
            response.headers().get(reqwest::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
        let text = response.text().await.map_err(|e| ClientError::Unreachable { url: url.clone(), reason: e.to_string() })?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        match body {
            Some(problem) if is_problem => Err(problem_error(status, &problem)),
            Some(body) if (200..300).contains(&status) => Ok(body),
            None if (200..300).contains(&status) && text.is_empty() => Ok(Value::Null),
            _ => Err(ClientError::Unexpected { url, status, body: text.chars().take(500).collect() }),
        }
    }
}

/// Whether `url` names this machine: `localhost` or a loopback address.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    // an IPv6 host comes bracketed, as it is written in the URL
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn problem_error(status: u16, problem: &Value) -> ClientError {
    let mut detail = problem["detail"].as_str().unwrap_or_default().to_string();
    if let Some(errors) = problem["errors"].as_array().filter(|e| !e.is_empty()) {
        let fields: Vec<String> =
            errors.iter().map(|e| format!("{}: {}", e["field"].as_str().unwrap_or("?"), e["reason"].as_str().unwrap_or("?"))).collect();
        detail = fields.join("; ");
    }
    ClientError::Problem { status, title: problem["title"].as_str().unwrap_or("Error").to_string(), detail }
}
