//! The bridge's Prometheus metrics, served at `GET /metrics`.

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

pub struct Metrics {
    registry: Registry,
    pub active_calls: Gauge,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub dropped_frames: Counter,
    /// Seconds from asking for the signed URL to the agent's socket being open.
    pub agent_connect_seconds: Histogram,
    /// Seconds a frame spent in the bridge, from being read off one socket to being written to the other.
    pub forwarding_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("outdial_bridge");
        let active_calls = Gauge::default();
        let (frames_in, frames_out, dropped_frames) = (Counter::default(), Counter::default(), Counter::default());
        // 10 ms … 20 s
        let agent_connect_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        // 10 µs … 160 ms
        let forwarding_seconds = Histogram::new(exponential_buckets(0.000_01, 2.0, 15));
        registry.register("active_calls", "Calls being bridged now", active_calls.clone());
        registry.register("frames_in", "Frames read from Twilio and ElevenLabs", frames_in.clone());
        registry.register("frames_out", "Frames written to Twilio and ElevenLabs", frames_out.clone());
        registry.register("dropped_frames", "Audio frames dropped because a peer lagged", dropped_frames.clone());
        registry.register("agent_connect_seconds", "Time to open the ElevenLabs conversation", agent_connect_seconds.clone());
        registry.register("forwarding_seconds", "Time a frame spends inside the bridge", forwarding_seconds.clone());
        Self { registry, active_calls, frames_in, frames_out, dropped_frames, agent_connect_seconds, forwarding_seconds }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = encode(&mut out, &self.registry);
        out
    }
}
