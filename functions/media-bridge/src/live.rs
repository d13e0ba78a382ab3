//! The live feed of calls being bridged: status and transcript lines, for dashboards.

use domain::{Call, CallId, OrgId};
use futures::{StreamExt, stream::BoxStream};
use serde::Serialize;
use std::{collections::HashMap, sync::Mutex};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// One thing that happened on a live call.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum LiveEvent {
    /// The call's state (`inProgress` while bridged, then its stored state).
    #[serde(rename_all = "camelCase")]
    Status {
        #[schema(value_type = String)]
        call_id: CallId,
        state: String,
    },
    /// A line heard: `speaker` is `agent` or `user`.
    #[serde(rename_all = "camelCase")]
    Transcript {
        #[schema(value_type = String)]
        call_id: CallId,
        speaker: &'static str,
        text: String,
    },
    /// The bridge is done with the call, and why.
    #[serde(rename_all = "camelCase")]
    Ended {
        #[schema(value_type = String)]
        call_id: CallId,
        reason: String,
    },
}

impl LiveEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Transcript { .. } => "transcript",
            Self::Ended { .. } => "ended",
        }
    }
}

/// A live call's feed: subscribers that fall behind skip what they missed rather than hold memory.
/// Every call allocates it up front, and lines come seconds apart: 16 is room enough.
const FEED_BACKLOG: usize = 16;

#[derive(Default)]
pub struct LiveFeeds {
    calls: Mutex<HashMap<CallId, (OrgId, broadcast::Sender<LiveEvent>)>>,
}

impl LiveFeeds {
    pub(crate) fn open(&self, org: OrgId, call: CallId) -> broadcast::Sender<LiveEvent> {
        let sender = broadcast::channel(FEED_BACKLOG).0;
        self.with_calls(|calls| calls.insert(call, (org, sender.clone())));
        sender
    }

    pub(crate) fn close(&self, call: CallId) {
        self.with_calls(|calls| calls.remove(&call));
    }

    /// The call's feed from now on, when it is live and the organisation's.
    pub fn subscribe(&self, org: OrgId, call: CallId) -> Option<BoxStream<'static, LiveEvent>> {
        let receiver = self.with_calls(|calls| calls.get(&call).filter(|(owner, _)| *owner == org).map(|(_, s)| s.subscribe()))?;
        // a subscriber that fell behind skips what it missed
        let events = BroadcastStream::new(receiver).filter_map(|e| async move { e.ok() });
        // the feed ends with the call
        Some(
            events
                .scan(false, |ended, e| {
                    let finished = *ended;
                    *ended = matches!(e, LiveEvent::Ended { .. });
                    async move { (!finished).then_some(e) }
                })
                .boxed(),
        )
    }

    fn with_calls<T>(&self, f: impl FnOnce(&mut HashMap<CallId, (OrgId, broadcast::Sender<LiveEvent>)>) -> T) -> T {
        f(&mut self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The feed of a call that is not live here: its stored state, then the end.
pub fn ended_feed(call: &Call) -> BoxStream<'static, LiveEvent> {
    let events = [
        LiveEvent::Status { call_id: call.id, state: call.state.as_str().to_string() },
        LiveEvent::Ended { call_id: call.id, reason: "not live on this bridge".into() },
    ];
    futures::stream::iter(events).boxed()
}
