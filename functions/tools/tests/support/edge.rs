//! The two servers the edge-time test and bench compare: the Spin component under
//! `scripts/edge-time`, and the native `GET /tools/time` served by axum in this process.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use store::SqliteStore;
use tools::{ToolsState, router};

/// The component's host, in a process group of its own, stopped with its owner.
pub struct EdgeHost {
    host: Child,
    pub url: String,
    pub port: u16,
}

impl EdgeHost {
    /// Starts `scripts/edge-time` on a free port (the first run builds the component and installs jco).
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/edge-time");
        let host = Command::new(script)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("scripts/edge-time starts");
        Self { host, url: format!("http://127.0.0.1:{port}/time"), port }
    }

    /// Waits until the host accepts connections, failing after `limit`.
    pub async fn listening(&self, limit: Duration) {
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(started.elapsed() < limit, "scripts/edge-time did not listen within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for EdgeHost {
    fn drop(&mut self) {
        // the whole group, by the syscall: jco serves from a child of its own, and procps-ng 4.0's
        // `kill -TERM -<pgid>` signals every process (-1) instead of the group
        if let Ok(group) = i32::try_from(self.host.id()) {
            unsafe { libc::killpg(group, libc::SIGTERM) };
        }
        let _ = self.host.wait();
    }
}

/// The native `GET /tools/time`, served on a free port by a spawned task.
pub async fn native_time_url() -> String {
    let state = ToolsState::from_config(&platform::testing::config(&[]), SqliteStore::open_in_memory().expect("in-memory store"));
    let (app, _) = router().with_state(state).split_for_parts();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/tools/time")
}
