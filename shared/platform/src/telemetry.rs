//! Tracing: JSON lines in Lambda (or with `LOG_FORMAT=json`), pretty locally; every line, at every
//! level and from every crate, passes through a writer that masks phone numbers and redacts the
//! signatures of signed URLs, so no log can leak one.

use crate::config::LogFormat;
use std::io::{self, Write};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

pub use domain::mask_phone;

/// Installs the global subscriber. Level from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    init_at(format, "info");
}

/// Installs the global subscriber with `default` as the level when `RUST_LOG` is unset.
pub fn init_at(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(MaskedStderr);
    // a second init (tests, the local stack starting twice) keeps the first subscriber
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// A writer that masks E.164 numbers in whatever is written through it.
pub struct Masking<W>(pub W);

impl<W: Write> Write for Masking<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact_signatures_in(&domain::mask_phones_in(text)).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Query parameters whose values let whoever reads them act: signed report links and upload URLs
/// (`signature`), S3's presigned URLs (`X-Amz-…`).
const SECRET_PARAMETERS: [&str; 4] = ["signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"];

/// `text` with the value of every secret query parameter (`?signature=…`, `&X-Amz-Signature=…`)
/// replaced by `[redacted]`.
pub fn redact_signatures_in(text: &str) -> std::borrow::Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let mut spans = Vec::new();
    for name in SECRET_PARAMETERS {
        let needle = format!("{name}=");
        for (at, _) in lower.match_indices(&needle) {
            let preceded = at.checked_sub(1).map(|i| lower.as_bytes()[i]);
            if matches!(preceded, Some(b'?' | b'&')) {
                let start = at + needle.len();
                let len = text[start..]
                    .find(|c: char| matches!(c, '&' | '"' | '\'' | '\\' | '#') || c.is_whitespace())
                    .unwrap_or(text.len() - start);
                spans.push((start, start + len));
            }
        }
    }
    if spans.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let (mut out, mut from) = (String::with_capacity(text.len()), 0);
    for (start, end) in spans {
        out.push_str(&text[from..start]);
        out.push_str("[redacted]");
        from = end;
    }
    out.push_str(&text[from..]);
    std::borrow::Cow::Owned(out)
}

/// Standard error, masked; tracing formats each event into one buffer, so numbers are never split.
pub struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = Masking<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        Masking(io::stderr())
    }
}

/// The local stack's router with one span per request: its method and path (a query can carry a
/// signature or a number, and the path is all a reader needs).
pub fn traced_router(router: axum::Router) -> axum::Router {
    let span = |request: &axum::http::Request<axum::body::Body>| tracing::info_span!("http_request", method = %request.method(), path = request.uri().path());
    router.layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(span))
}

/// A Lambda HTTP function's router with one span per request, carrying the Lambda request id.
#[cfg(feature = "lambda")]
pub fn traced_lambda_router(router: axum::Router) -> axum::Router {
    use lambda_http::RequestExt;
    let span = |request: &axum::http::Request<axum::body::Body>| {
        let request_id = request.extensions().lambda_context_ref().map(|c| c.request_id.clone()).unwrap_or_default();
        tracing::info_span!("http_request", method = %request.method(), path = request.uri().path(), request_id)
    };
    router.layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(span))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Masking<Captured>;
        fn make_writer(&'a self) -> Self::Writer {
            Masking(self.clone())
        }
    }

    /// A debug line of a request to a signed upload URL with a number in its query, as a trace
    /// layer writes it: the signature and the number do not reach the log.
    #[test]
    fn debug_lines_carry_no_signature_and_no_number() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt().json().with_max_level(tracing::Level::DEBUG).with_writer(captured.clone()).finish();
        let uri = "/uploads/o/c/u?expires=1900000000&signature=q8Jm%2Fx_Z-3&To=%2B14155550100";
        let presigned = "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=9f3a&x-id=PutObject";
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(uri, "started processing request");
            tracing::debug!("PUT {presigned} \"signature=quoted\"");
        });
        let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        for secret in ["q8Jm", "AKIA", "9f3a", "4155550100"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("signature=[redacted]&To=%2B1415***0100"), "{out}");
        assert!(out.contains("X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]&x-id=PutObject"), "{out}");
        assert!(out.contains("\\\"signature=quoted"), "only query parameters are redacted: {out}");
    }

    #[test]
    fn json_log_lines_never_carry_a_phone_number() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt().json().flatten_event(true).with_writer(captured.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(to = "+14158675310", call = "0192f3a4-5b6c-7d8e-9f00-112233445566", "dialing +442079460958");
        });
        let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["to"], "+1415***5310");
        assert_eq!(line["message"], "dialing +4420***0958");
        assert_eq!(line["call"], "0192f3a4-5b6c-7d8e-9f00-112233445566", "ids are left alone");
    }
}
