//! Tracing: JSON lines in Lambda (or with `LOG_FORMAT=json`), pretty locally; every line passes
//! through a writer that masks phone numbers, so no log can leak one.

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
            Ok(text) => self.0.write_all(domain::mask_phones_in(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Standard error, masked; tracing formats each event into one buffer, so numbers are never split.
pub struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = Masking<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        Masking(io::stderr())
    }
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
