//! What waits to be written to one peer. Audio is bounded: when the peer lags, the oldest audio
//! goes (counted) before any control message (marks, clear, pongs, tool results). Control
//! messages are bounded too, at `CONTROL_CAPACITY` (a peer flooding keypad presses or pings must
//! not grow the other's queue): past it the oldest goes. So memory stays bounded whatever the peers do.

use std::{collections::VecDeque, sync::Mutex, time::Instant};
use tokio::sync::Notify;

#[derive(Debug)]
pub enum Outgoing {
    /// Audio, with the agent's event id when it is agent audio (interruptions refer to it).
    Audio {
        text: String,
        event_id: Option<u64>,
        queued_at: Instant,
    },
    Control {
        text: String,
    },
    /// Close the socket once everything before it is written.
    Close,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    audio: usize,
    control: usize,
}

/// Control messages queued for one peer at most; far more than a live call ever has waiting.
pub const CONTROL_CAPACITY: usize = 256;

pub struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    audio_capacity: usize,
}

impl Outbox {
    pub fn new(audio_capacity: usize) -> Self {
        Self { queue: Mutex::new(Queue::default()), ready: Notify::new(), audio_capacity: audio_capacity.max(1) }
    }

    /// Queues audio; returns how many older frames were dropped to make room.
    pub fn push_audio(&self, text: String, event_id: Option<u64>) -> usize {
        let dropped = self.with_queue(|q| {
            let mut dropped = 0;
            while q.audio >= self.audio_capacity {
                let Some(oldest) = q.items.iter().position(|i| matches!(i, Outgoing::Audio { .. })) else { break };
                q.items.remove(oldest);
                q.audio -= 1;
                dropped += 1;
            }
            q.items.push_back(Outgoing::Audio { text, event_id, queued_at: Instant::now() });
            q.audio += 1;
            dropped
        });
        self.ready.notify_one();
        dropped
    }

    /// Queues a control message after what is queued (a mark follows the audio it marks).
    pub fn push_control(&self, text: String) {
        self.with_queue(|q| {
            Self::make_control_room(q);
            q.items.push_back(Outgoing::Control { text });
        });
        self.ready.notify_one();
    }

    /// Sends a control message before anything queued (a pong must not wait behind audio).
    pub fn push_urgent(&self, text: String) {
        self.with_queue(|q| {
            Self::make_control_room(q);
            q.items.push_front(Outgoing::Control { text });
        });
        self.ready.notify_one();
    }

    /// Drops the oldest control message when the queue holds `CONTROL_CAPACITY`, then counts the new one.
    fn make_control_room(q: &mut Queue) {
        if q.control >= CONTROL_CAPACITY
            && let Some(oldest) = q.items.iter().position(|i| matches!(i, Outgoing::Control { .. }))
        {
            q.items.remove(oldest);
            q.control -= 1;
        }
        q.control += 1;
    }

    /// Barge-in: drops queued agent audio up to `event_id` and puts `clear` first.
    pub fn interrupt(&self, event_id: u64, clear: String) -> usize {
        let dropped = self.with_queue(|q| {
            let before = q.items.len();
            q.items.retain(|i| !matches!(i, Outgoing::Audio { event_id: Some(id), .. } if *id <= event_id));
            let dropped = before - q.items.len();
            q.audio -= dropped;
            Self::make_control_room(q);
            q.items.push_front(Outgoing::Control { text: clear });
            dropped
        });
        self.ready.notify_one();
        dropped
    }

    pub fn close(&self) {
        self.with_queue(|q| q.items.push_back(Outgoing::Close));
        self.ready.notify_one();
    }

    /// Everything queued now, waiting until there is something.
    pub async fn take(&self, into: &mut Vec<Outgoing>) {
        loop {
            self.with_queue(|q| {
                into.extend(q.items.drain(..));
                (q.audio, q.control) = (0, 0);
            });
            if !into.is_empty() {
                return;
            }
            // a notify_one without a waiter leaves a permit: no wake-up is lost between the check and here
            self.ready.notified().await;
        }
    }

    fn with_queue<T>(&self, f: impl FnOnce(&mut Queue) -> T) -> T {
        // a panic while holding this lock cannot leave the queue half-changed in a way that matters
        let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[Outgoing]) -> Vec<&str> {
        items
            .iter()
            .map(|i| match i {
                Outgoing::Audio { text, .. } | Outgoing::Control { text } => text.as_str(),
                Outgoing::Close => "close",
            })
            .collect()
    }

    #[tokio::test]
    async fn a_lagging_peer_loses_the_oldest_audio_and_no_control_message() {
        let outbox = Outbox::new(3);
        outbox.push_control("mark0".into());
        let dropped: usize = (0..10).map(|i| outbox.push_audio(format!("a{i}"), None)).sum();
        outbox.push_control("mark1".into());
        assert_eq!(dropped, 7);
        let mut items = Vec::new();
        outbox.take(&mut items).await;
        assert_eq!(texts(&items), ["mark0", "a7", "a8", "a9", "mark1"]);
    }

    #[tokio::test]
    async fn a_flood_of_control_messages_keeps_only_the_newest() {
        let outbox = Outbox::new(3);
        for i in 0..CONTROL_CAPACITY + 10 {
            outbox.push_control(format!("dtmf{i}"));
        }
        outbox.push_audio("a0".into(), None);
        let mut items = Vec::new();
        outbox.take(&mut items).await;
        assert_eq!(items.len(), CONTROL_CAPACITY + 1);
        assert_eq!(texts(&items)[0], "dtmf10", "the oldest ten went");
        assert_eq!(texts(&items)[CONTROL_CAPACITY], "a0");
    }

    #[tokio::test]
    async fn an_interruption_drops_agent_audio_up_to_its_event_and_clears_first() {
        let outbox = Outbox::new(100);
        for id in 1..=5 {
            outbox.push_audio(format!("a{id}"), Some(id));
        }
        outbox.push_control("mark".into());
        assert_eq!(outbox.interrupt(3, "clear".into()), 3);
        outbox.push_urgent("pong".into());
        let mut items = Vec::new();
        outbox.take(&mut items).await;
        assert_eq!(texts(&items), ["pong", "clear", "a4", "a5", "mark"]);
    }
}
