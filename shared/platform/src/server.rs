//! The HTTP servers' accept loop (the local stack and the media bridge): HTTP/1.1 with upgrades,
//! a connection costs a few KiB until it sends, a request head must arrive in time, and no more
//! than a set number of connections are served at once (the rest wait in the listen backlog).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{future::Future, sync::Arc, time::Duration};

/// What one connection may hold, and how many are served at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once (`OUTDIAL_MAX_CONNECTIONS`); the next waits to be accepted.
    pub max_connections: usize,
    /// How long a request's head (line and headers) may take to arrive: a connection that sends
    /// nothing, or trickles, is closed after it.
    pub header_read_timeout: Duration,
    /// The largest request head, and so the most a connection buffers before its body.
    pub max_head_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { max_connections: 1024, header_read_timeout: Duration::from_secs(10), max_head_bytes: 64 * 1024 }
    }
}

/// Serves `app` on `listener` under `limits` until `stop` completes, then waits for the requests
/// under way (an upgraded WebSocket is its handler's to finish). `nodelay` sets `TCP_NODELAY`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    nodelay: bool,
    stop: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let connections = tokio_util::task::TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(limits.max_head_bytes);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
            () = &mut stop => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                // out of file descriptors, or a connection reset before it was taken: the others go on
                Err(e) => {
                    tracing::warn!(error = %e, "a connection was not accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        if nodelay && let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "TCP_NODELAY not set");
        }
        // a Router clone shares its routes; axum::serve rebuilds them for every connection (~2 MiB here)
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(tcp), service).with_upgrades();
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop => {
                    // the request under way is answered, then the connection closes
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    let _ = stopping.send(true);
    connections.close();
    connections.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn served(limits: ConnectionLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, true, async move {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    async fn get(address: std::net::SocketAddr) -> String {
        let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
        let limits = ConnectionLimits { header_read_timeout: Duration::from_millis(300), ..ConnectionLimits::default() };
        let (address, _stop) = served(limits).await;
        let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut trickle = tokio::net::TcpStream::connect(address).await.unwrap();
        trickle.write_all(b"GET / HT").await.unwrap();
        for tcp in [&mut silent, &mut trickle] {
            let mut buf = [0u8; 256];
            let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("closed in time");
            // closed (0), or told 408 and then closed
            let closed = read.as_ref().map_or(true, |&n| n == 0 || buf[..n].starts_with(b"HTTP/1.1 408"));
            assert!(closed, "{read:?}");
        }
        assert!(get(address).await.ends_with("hello"), "a prompt request is answered");
    }

    #[tokio::test]
    async fn connections_past_the_limit_wait_until_one_closes() {
        let limits = ConnectionLimits { max_connections: 2, ..ConnectionLimits::default() };
        let (address, _stop) = served(limits).await;
        let held: Vec<_> = futures::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(address))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = tokio::spawn(get(address));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "a third connection is not served while two are held");
        drop(held);
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("served once one closed").unwrap();
        assert!(answer.ends_with("hello"), "{answer}");
    }
}
