//! The call state machine: a pure function from (state, normalised event) to a transition that
//! never moves backwards, keeps the first terminal outcome, still accepts enrichment, and says
//! when capacity is released (exactly once: on the move into a terminal state).

use crate::{CallId, CampaignId, ContactId, E164, Money, OrgId, VoicemailAction};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Queued,
    Ringing,
    InProgress,
    Ended,
    Failed,
    Canceled,
    Timeout,
}

impl CallState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ended | Self::Failed | Self::Canceled | Self::Timeout)
    }

    /// Position on the way to the end; every terminal state is the last step.
    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Ringing => 1,
            Self::InProgress => 2,
            Self::Ended | Self::Failed | Self::Canceled | Self::Timeout => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ringing => "ringing",
            Self::InProgress => "in_progress",
            Self::Ended => "ended",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Timeout => "timeout",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Ringing, Self::InProgress, Self::Ended, Self::Failed, Self::Canceled, Self::Timeout]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// How a call ended, as the provider (or our sweep) reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Connected and then hung up by either side.
    Completed,
    Busy,
    NoAnswer,
    /// The provider could not place or carry the call.
    Failed,
    Canceled,
    /// No news from the provider within the timeout.
    Timeout,
    /// Not placed: the contact's legal calling window had closed (or was closing) by the time it
    /// could be dialed. The contact waits for its next opening.
    OutsideWindow,
    /// Not placed: the number was on the organisation's do-not-call list by the time it could be dialed.
    DoNotCall,
    /// Not placed: the contact has no consent on record (imported before consent was recorded).
    NoConsent,
}

impl EndReason {
    pub const ALL: [EndReason; 9] = [
        Self::Completed,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Canceled,
        Self::Timeout,
        Self::OutsideWindow,
        Self::DoNotCall,
        Self::NoConsent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Timeout => "timeout",
            Self::OutsideWindow => "outside_window",
            Self::DoNotCall => "do_not_call",
            Self::NoConsent => "no_consent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn state(self) -> CallState {
        match self {
            Self::Completed | Self::Busy | Self::NoAnswer => CallState::Ended,
            Self::Failed => CallState::Failed,
            Self::Canceled | Self::OutsideWindow | Self::DoNotCall | Self::NoConsent => CallState::Canceled,
            Self::Timeout => CallState::Timeout,
        }
    }
}

/// Who (or what) picked up, from answering-machine detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Human,
    /// A machine whose greeting is still playing.
    MachineStart,
    /// A machine whose greeting has ended: the moment to leave a voicemail.
    MachineEnd,
    Fax,
    Unknown,
}

impl AnsweredBy {
    pub fn is_machine(self) -> bool {
        matches!(self, Self::MachineStart | Self::MachineEnd | Self::Fax)
    }

    /// What the campaign's voicemail action asks for now that detection says who answered:
    /// nothing for a person (the assistant talks) or a greeting still playing (wait for its end).
    pub fn voicemail_step(self, action: VoicemailAction) -> Option<VoicemailStep> {
        match (self, action) {
            (Self::MachineEnd, VoicemailAction::LeaveMessage) => Some(VoicemailStep::LeaveMessage),
            (Self::MachineEnd, VoicemailAction::Hangup) | (Self::Fax, _) => Some(VoicemailStep::HangUp),
            (Self::Human | Self::MachineStart | Self::Unknown, _) => None,
        }
    }
}

/// The answering-machine action to take on a live call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoicemailStep {
    HangUp,
    /// Speak the campaign's voicemail message, then hang up.
    LeaveMessage,
}

/// Data that may arrive at any time, also after the call ended; merged field by field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<AnsweredBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    /// When the agent's first audio reached the callee after the answer (the bridge sees it;
    /// unknown for providers that do not report it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_evaluation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The callee asked not to be called again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opted_out: bool,
}

impl CallDetails {
    /// Takes every field `patch` carries; an opt-out, once heard, stays.
    fn merge(&mut self, patch: &CallDetails) {
        fn take<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
            if from.is_some() {
                into.clone_from(from);
            }
        }
        // "greeting still playing" never overwrites the greeting's end, whatever order they came in
        if !(self.answered_by == Some(AnsweredBy::MachineEnd) && patch.answered_by == Some(AnsweredBy::MachineStart)) {
            take(&mut self.answered_by, &patch.answered_by);
        }
        take(&mut self.answered_at, &patch.answered_at);
        take(&mut self.connected_at, &patch.connected_at);
        take(&mut self.duration_secs, &patch.duration_secs);
        take(&mut self.cost, &patch.cost);
        take(&mut self.recording_url, &patch.recording_url);
        take(&mut self.transcript, &patch.transcript);
        take(&mut self.summary, &patch.summary);
        take(&mut self.success_evaluation, &patch.success_evaluation);
        take(&mut self.structured_data, &patch.structured_data);
        take(&mut self.error, &patch.error);
        self.opted_out |= patch.opted_out;
    }
}

/// A provider's (or the sweep's) news about a call, normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallEventKind {
    /// Accepted by the provider (carries its call id when known).
    Queued,
    Ringing,
    /// Picked up (by a person or a machine).
    Answered,
    /// The call is over.
    Ended {
        reason: EndReason,
    },
    /// Data that does not move the state: duration, cost, recording, transcript, analysis…
    Details {
        details: Box<CallDetails>,
    },
    /// An event type or status value we do not know: kept in the log, changes nothing.
    Unrecognised {
        description: String,
    },
    /// What outdial itself saw happen on the call (how the media stream ended, a tool the agent
    /// ran): kept in the log, changes nothing.
    Note {
        text: String,
    },
}

/// One event of a call, with the key that recognises its duplicates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    /// Provider-specific identity of the event (e.g. Twilio CallSid + SequenceNumber + kind).
    pub dedupe_key: String,
    /// When it happened, as the provider says; falls back to when we received it.
    pub occurred_at: DateTime<Utc>,
    pub kind: CallEventKind,
}

/// What an event does to a call's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: CallState,
    pub to: CallState,
    /// True exactly when the call becomes terminal: its slot under the cap is free again.
    pub releases_capacity: bool,
}

impl Transition {
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// The state machine: moves forward only, the first terminal state is final.
pub fn advance(state: CallState, event: &CallEventKind) -> Transition {
    let proposed = match event {
        CallEventKind::Queued => CallState::Queued,
        CallEventKind::Ringing => CallState::Ringing,
        CallEventKind::Answered => CallState::InProgress,
        CallEventKind::Ended { reason } => reason.state(),
        CallEventKind::Details { .. } | CallEventKind::Unrecognised { .. } | CallEventKind::Note { .. } => state,
    };
    let to = if state.is_terminal() || proposed.rank() <= state.rank() { state } else { proposed };
    Transition { from: state, to, releases_capacity: !state.is_terminal() && to.is_terminal() }
}

/// The outcome of a finished call, for the contact and for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallDisposition {
    AnsweredHuman,
    Voicemail,
    NoAnswer,
    Busy,
    Failed,
    Canceled,
    DoNotCall,
    /// Not placed: outside the contact's legal calling window.
    OutsideWindow,
    /// Not placed: no consent on record.
    NoConsent,
}

impl CallDisposition {
    pub const ALL: [CallDisposition; 9] = [
        Self::AnsweredHuman,
        Self::Voicemail,
        Self::NoAnswer,
        Self::Busy,
        Self::Failed,
        Self::Canceled,
        Self::DoNotCall,
        Self::OutsideWindow,
        Self::NoConsent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnsweredHuman => "answered_human",
            Self::Voicemail => "voicemail",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::DoNotCall => "do_not_call",
            Self::OutsideWindow => "outside_window",
            Self::NoConsent => "no_consent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// How long after a conversation ends its report (transcript, analysis) is waited for before the
/// call's post-call work (CRM delivery) goes ahead without it.
pub const REPORT_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// A call's transcript as it was heard, one "agent: …" or "user: …" line per turn; it notices a
/// callee asking not to be called again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    text: String,
    /// Where each line starts in `text`.
    starts: Vec<usize>,
    opted_out: bool,
}

impl Transcript {
    /// Adds a turn; providers' speaker names (`assistant`, `bot`) become `agent`.
    pub fn push(&mut self, role: &str, line: &str) {
        let role = if role == "assistant" || role == "bot" { "agent" } else { role };
        self.opted_out |= role == "user" && asks_not_to_be_called(line);
        if !self.starts.is_empty() {
            self.text.push('\n');
        }
        self.starts.push(self.text.len());
        self.text.push_str(role);
        self.text.push_str(": ");
        self.text.push_str(line);
    }

    /// The whole text so far; None before the first line.
    pub fn text(&self) -> Option<&str> {
        (!self.starts.is_empty()).then_some(self.text.as_str())
    }

    /// The lines from line `first` on (0-based), as the text holds them; empty when there are none.
    pub fn since(&self, first: usize) -> &str {
        self.starts.get(first).map_or("", |&at| &self.text[at..])
    }

    pub fn lines(&self) -> usize {
        self.starts.len()
    }

    /// The callee asked not to be called again.
    pub fn opted_out(&self) -> bool {
        self.opted_out
    }
}

/// True when a callee's line asks not to be called again ("don't call me again", "remove me from
/// your list", "stop calling", …).
pub fn asks_not_to_be_called(line: &str) -> bool {
    let line = line.to_lowercase().replace(['\u{2019}', '\''], "");
    const PHRASES: [&str; 12] = [
        "dont call me",
        "do not call me",
        "dont call again",
        "do not call again",
        "dont call this number",
        "do not call this number",
        "stop calling",
        "never call",
        "remove me from",
        "take me off",
        "put me on your do not call",
        "put me on the do not call",
    ];
    PHRASES.iter().any(|p| line.contains(p))
}

/// A call: one attempt to reach one contact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub id: CallId,
    pub org_id: OrgId,
    pub campaign_id: CampaignId,
    pub contact_id: ContactId,
    /// 1 for the first attempt at this contact, 2 for the first retry, …
    pub attempt: u32,
    pub phone: E164,
    pub state: CallState,
    pub end_reason: Option<EndReason>,
    pub ended_at: Option<DateTime<Utc>>,
    pub details: CallDetails,
    pub created_at: DateTime<Utc>,
    /// When the state last changed: the stuck-call sweep measures "no news" from here.
    pub last_status_at: DateTime<Utc>,
    /// The provider's id for the call, once the dialer placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_call_id: Option<String>,
    /// The number the call went out from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<E164>,
    /// When the provider was asked to place it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<DateTime<Utc>>,
    /// While a dialer is placing it: no other dialer may (at most one dial per attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialing_since: Option<DateTime<Utc>>,
    /// When its post-call work (CRM delivery, the next tick) was handed on: once per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_call_at: Option<DateTime<Utc>>,
}

/// What absorbing one event did to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Absorbed {
    pub transition: Transition,
    /// The disposition before the event (None while the call is not terminal).
    pub disposition_before: Option<CallDisposition>,
}

impl Absorbed {
    /// True when the contact's fate must be (re)decided: the call just ended, or late data
    /// (an answering-machine result, an opt-out) changed how it ended.
    pub fn decides_contact(&self, call: &Call) -> bool {
        self.transition.releases_capacity || (call.state.is_terminal() && call.disposition() != self.disposition_before)
    }
}

impl Call {
    pub fn queued(org_id: OrgId, campaign_id: CampaignId, contact_id: ContactId, attempt: u32, phone: E164, now: DateTime<Utc>) -> Self {
        Self {
            id: CallId::new(),
            org_id,
            campaign_id,
            contact_id,
            attempt,
            phone,
            state: CallState::Queued,
            end_reason: None,
            ended_at: None,
            details: CallDetails::default(),
            created_at: now,
            last_status_at: now,
            provider_call_id: None,
            caller_id: None,
            placed_at: None,
            dialing_since: None,
            post_call_at: None,
        }
    }

    /// A person talked to the assistant: a report (transcript, analysis) is coming.
    pub fn expects_report(&self) -> bool {
        self.end_reason == Some(EndReason::Completed)
            && self.details.answered_at.is_some()
            && !self.details.answered_by.is_some_and(AnsweredBy::is_machine)
    }

    pub fn has_report(&self) -> bool {
        self.details.transcript.is_some() || self.details.summary.is_some()
    }

    /// True when the call is over, its post-call work not yet done, and nothing more is worth
    /// waiting for: no report is coming, it came, or `REPORT_GRACE` passed without it.
    pub fn post_call_due(&self, now: DateTime<Utc>) -> bool {
        let Some(ended_at) = self.ended_at else { return false };
        self.state.is_terminal()
            && self.post_call_at.is_none()
            && (!self.expects_report() || self.has_report() || ended_at + REPORT_GRACE <= now)
    }

    /// Applies one event: the state advances (never back), the first end is kept, details merge.
    pub fn absorb(&mut self, event: &CallEvent) -> Absorbed {
        let disposition_before = self.disposition();
        let transition = advance(self.state, &event.kind);
        match &event.kind {
            CallEventKind::Ended { reason } if transition.releases_capacity => {
                self.end_reason = Some(*reason);
                self.ended_at = Some(event.occurred_at);
            }
            // the earliest answer wins whatever order the events came in
            CallEventKind::Answered if self.details.answered_at.is_none_or(|t| event.occurred_at < t) => {
                self.details.answered_at = Some(event.occurred_at);
            }
            CallEventKind::Details { details } => self.details.merge(details),
            _ => {}
        }
        if transition.changed() {
            self.state = transition.to;
            self.last_status_at = event.occurred_at.max(self.last_status_at);
        }
        Absorbed { transition, disposition_before }
    }

    /// How the call ended, from everything known about it; None while it is not over.
    pub fn disposition(&self) -> Option<CallDisposition> {
        let reason = self.end_reason?;
        if self.details.opted_out {
            return Some(CallDisposition::DoNotCall);
        }
        Some(match reason {
            EndReason::Completed | EndReason::NoAnswer if self.details.answered_by.is_some_and(AnsweredBy::is_machine) => {
                CallDisposition::Voicemail
            }
            EndReason::Completed => CallDisposition::AnsweredHuman,
            EndReason::NoAnswer => CallDisposition::NoAnswer,
            EndReason::Busy => CallDisposition::Busy,
            EndReason::Failed | EndReason::Timeout => CallDisposition::Failed,
            EndReason::Canceled => CallDisposition::Canceled,
            EndReason::OutsideWindow => CallDisposition::OutsideWindow,
            EndReason::DoNotCall => CallDisposition::DoNotCall,
            EndReason::NoConsent => CallDisposition::NoConsent,
        })
    }

    /// Ended by the dialer before any provider was asked to place it (calling window closed,
    /// emergency stop, campaign canceled): its attempt was never spent.
    pub fn was_withdrawn(&self) -> bool {
        self.provider_call_id.is_none()
            && self.placed_at.is_none()
            && matches!(self.end_reason, Some(EndReason::OutsideWindow | EndReason::Canceled | EndReason::DoNotCall | EndReason::NoConsent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn ev(key: &str, secs: i64, kind: CallEventKind) -> CallEvent {
        CallEvent { dedupe_key: key.into(), occurred_at: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(), kind }
    }

    fn ended(reason: EndReason) -> CallEventKind {
        CallEventKind::Ended { reason }
    }

    fn details(d: CallDetails) -> CallEventKind {
        CallEventKind::Details { details: Box::new(d) }
    }

    fn new_call() -> Call {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Call::queued(OrgId::new(), CampaignId::new(), ContactId::new(), 1, E164::parse("+14155552671", None).unwrap(), t)
    }

    #[test]
    fn a_transcript_hands_out_the_lines_since_any_line() {
        let mut t = Transcript::default();
        assert_eq!((t.text(), t.since(0)), (None, ""));
        t.push("assistant", "Hi, this is an AI assistant.");
        t.push("user", "Hello.");
        t.push("user", "Please don't call me again.");
        assert_eq!(t.since(0), t.text().unwrap());
        assert_eq!(t.since(1), "user: Hello.\nuser: Please don't call me again.");
        assert_eq!((t.since(3), t.lines(), t.opted_out()), ("", 3, true));
    }

    #[test]
    fn states_only_move_forward() {
        use CallState::*;
        let all = [Queued, Ringing, InProgress, Ended, Failed, Canceled, Timeout];
        let kinds =
            [CallEventKind::Queued, CallEventKind::Ringing, CallEventKind::Answered, ended(EndReason::Completed), ended(EndReason::Failed)];
        for s in all {
            for k in &kinds {
                let t = advance(s, k);
                assert!(t.to.rank() >= s.rank(), "{s:?} --{k:?}--> {:?} went backwards", t.to);
                if s.is_terminal() {
                    assert_eq!(t.to, s, "terminal {s:?} is final");
                    assert!(!t.releases_capacity);
                }
                assert_eq!(t.releases_capacity, !s.is_terminal() && t.to.is_terminal());
            }
        }
        assert_eq!(advance(Ringing, &CallEventKind::Queued).to, Ringing);
        assert_eq!(advance(Queued, &ended(EndReason::Busy)).to, Ended);
        assert_eq!(advance(InProgress, &ended(EndReason::Timeout)).to, Timeout);
        for r in EndReason::ALL {
            assert_eq!((EndReason::parse(r.as_str()), serde_json::to_value(r).unwrap()), (Some(r), serde_json::json!(r.as_str())));
        }
    }

    #[test]
    fn terminal_calls_still_take_enrichment_but_not_a_new_outcome() {
        let mut call = new_call();
        call.absorb(&ev("a", 1, CallEventKind::Answered));
        let end = call.absorb(&ev("b", 60, ended(EndReason::Completed)));
        assert!(end.transition.releases_capacity);
        let late = call.absorb(&ev("c", 70, ended(EndReason::Failed)));
        assert!(!late.transition.releases_capacity);
        assert_eq!(call.state, CallState::Ended);
        assert_eq!(call.end_reason, Some(EndReason::Completed));
        call.absorb(&ev(
            "d",
            80,
            details(CallDetails { cost: Some(Money::parse("0.12").unwrap()), duration_secs: Some(59), ..Default::default() }),
        ));
        assert_eq!(call.details.duration_secs, Some(59));
        assert_eq!(call.disposition(), Some(CallDisposition::AnsweredHuman));
    }

    #[test]
    fn post_call_waits_for_a_conversations_report_up_to_the_grace() {
        let t = |secs: i64| DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        let mut call = new_call();
        assert!(!call.post_call_due(t(0)), "not over yet");
        call.absorb(&ev("a", 5, CallEventKind::Answered));
        call.absorb(&ev("e", 60, ended(EndReason::Completed)));
        assert!(call.expects_report());
        assert!(!call.post_call_due(t(61)));
        assert!(call.post_call_due(t(60) + REPORT_GRACE), "the grace is over");
        call.absorb(&ev("r", 62, details(CallDetails { transcript: Some("agent: hi".into()), ..Default::default() })));
        assert!(call.post_call_due(t(62)));
        call.post_call_at = Some(t(62));
        assert!(!call.post_call_due(t(99)), "once");

        let mut busy = new_call();
        busy.absorb(&ev("e", 20, ended(EndReason::Busy)));
        assert!(!busy.expects_report() && busy.post_call_due(t(20)));
        let mut machine = new_call();
        machine.absorb(&ev("a", 5, CallEventKind::Answered));
        machine.absorb(&ev("m", 6, details(CallDetails { answered_by: Some(AnsweredBy::MachineEnd), ..Default::default() })));
        machine.absorb(&ev("e", 30, ended(EndReason::Completed)));
        assert!(machine.post_call_due(t(30)), "a voicemail has no conversation to report");
    }

    #[test]
    fn machine_detection_drives_the_voicemail_action_and_its_end_is_kept() {
        use VoicemailAction::*;
        assert_eq!(AnsweredBy::MachineEnd.voicemail_step(Hangup), Some(VoicemailStep::HangUp));
        assert_eq!(AnsweredBy::MachineEnd.voicemail_step(LeaveMessage), Some(VoicemailStep::LeaveMessage));
        assert_eq!(AnsweredBy::Fax.voicemail_step(LeaveMessage), Some(VoicemailStep::HangUp));
        for waits in [AnsweredBy::MachineStart, AnsweredBy::Human, AnsweredBy::Unknown] {
            assert_eq!((waits.voicemail_step(Hangup), waits.voicemail_step(LeaveMessage)), (None, None));
        }
        let mut call = new_call();
        let by = |a| details(CallDetails { answered_by: Some(a), ..Default::default() });
        call.absorb(&ev("end", 9, by(AnsweredBy::MachineEnd)));
        call.absorb(&ev("start", 3, by(AnsweredBy::MachineStart)));
        assert_eq!(call.details.answered_by, Some(AnsweredBy::MachineEnd), "a late machine_start does not undo machine_end");
    }

    #[test]
    fn opt_out_lines_are_recognised() {
        for yes in
            ["Please don't call me again.", "DO NOT CALL ME", "Stop calling this number", "remove me from your list", "Dont call again"]
        {
            assert!(asks_not_to_be_called(yes), "{yes}");
        }
        for no in ["Sure, go ahead.", "Call me tomorrow", "I don't know", "call me again next week"] {
            assert!(!asks_not_to_be_called(no), "{no}");
        }
        for d in CallDisposition::ALL {
            assert_eq!((CallDisposition::parse(d.as_str()), serde_json::to_value(d).unwrap()), (Some(d), serde_json::json!(d.as_str())));
        }
    }

    #[test]
    fn late_machine_detection_and_opt_out_change_the_disposition() {
        let mut call = new_call();
        call.absorb(&ev("end", 60, ended(EndReason::Completed)));
        assert_eq!(call.disposition(), Some(CallDisposition::AnsweredHuman));
        let amd = call.absorb(&ev("amd", 5, details(CallDetails { answered_by: Some(AnsweredBy::MachineEnd), ..Default::default() })));
        assert!(amd.decides_contact(&call));
        assert_eq!(call.disposition(), Some(CallDisposition::Voicemail));
        let same = call.absorb(&ev("cost", 90, details(CallDetails { cost: Some(Money::ZERO), ..Default::default() })));
        assert!(!same.decides_contact(&call), "data that does not change the outcome decides nothing");
        call.absorb(&ev("opt", 95, details(CallDetails { opted_out: true, ..Default::default() })));
        assert_eq!(call.disposition(), Some(CallDisposition::DoNotCall));
    }

    /// A plausible life of one call, as a provider would report it.
    fn lifecycle() -> impl Strategy<Value = Vec<CallEvent>> {
        let reason = prop_oneof![
            Just(EndReason::Completed),
            Just(EndReason::Busy),
            Just(EndReason::NoAnswer),
            Just(EndReason::Failed),
            Just(EndReason::Canceled),
            Just(EndReason::Timeout),
        ];
        let answered_by =
            proptest::option::of(prop_oneof![Just(AnsweredBy::Human), Just(AnsweredBy::MachineEnd), Just(AnsweredBy::Unknown)]);
        (reason, answered_by, any::<bool>(), 1u32..600, any::<bool>()).prop_map(|(reason, answered_by, opted_out, secs, with_unknown)| {
            let mut events = vec![ev("queued", 0, CallEventKind::Queued), ev("ringing", 2, CallEventKind::Ringing)];
            if reason == EndReason::Completed {
                events.push(ev("answered", 8, CallEventKind::Answered));
                if let Some(by) = answered_by {
                    events.push(ev("amd", 10, details(CallDetails { answered_by: Some(by), ..Default::default() })));
                }
            }
            events.push(ev("ended", 8 + i64::from(secs), ended(reason)));
            events.push(ev(
                "report",
                9 + i64::from(secs),
                details(CallDetails {
                    duration_secs: Some(secs),
                    cost: Some(Money::parse("0.013").unwrap()),
                    opted_out,
                    ..Default::default()
                }),
            ));
            if with_unknown {
                events.push(ev("weird", 3, CallEventKind::Unrecognised { description: "status=forwarding".into() }));
            }
            events
        })
    }

    /// Applies events like the store does: duplicates (same dedupe key) are dropped.
    fn replay(events: &[CallEvent]) -> (Call, usize) {
        let mut call = new_call();
        let mut seen = std::collections::HashSet::new();
        let mut releases = 0;
        for e in events {
            if seen.insert(e.dedupe_key.clone()) && call.absorb(e).transition.releases_capacity {
                releases += 1;
            }
        }
        (call, releases)
    }

    fn shuffled_with_duplicates() -> impl Strategy<Value = (Vec<CallEvent>, Vec<CallEvent>)> {
        lifecycle().prop_flat_map(|events| {
            let n = events.len();
            (Just(events.clone()), proptest::collection::vec(0..n, 0..n * 2)).prop_flat_map(move |(events, dups)| {
                let mut noisy = events.clone();
                noisy.extend(dups.iter().map(|&i| events[i].clone()));
                (Just(events), Just(noisy).prop_shuffle())
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        #[test]
        fn any_order_and_duplication_gives_the_same_call((in_order, noisy) in shuffled_with_duplicates()) {
            let (expected, expected_releases) = replay(&in_order);
            let (actual, releases) = replay(&noisy);
            prop_assert!(expected.state.is_terminal());
            prop_assert_eq!(expected_releases, 1);
            prop_assert_eq!(releases, 1, "capacity released exactly once");
            let mut actual = actual;
            actual.id = expected.id;
            actual.org_id = expected.org_id;
            actual.campaign_id = expected.campaign_id;
            actual.contact_id = expected.contact_id;
            prop_assert_eq!(actual.disposition(), expected.disposition());
            prop_assert_eq!(actual, expected);
        }

        #[test]
        fn the_first_terminal_event_is_final(a in 0usize..6, b in 0usize..6) {
            let reasons = [EndReason::Completed, EndReason::Busy, EndReason::NoAnswer, EndReason::Failed, EndReason::Canceled, EndReason::Timeout];
            let mut call = new_call();
            let first = call.absorb(&ev("1", 10, ended(reasons[a])));
            let second = call.absorb(&ev("2", 20, ended(reasons[b])));
            prop_assert!(first.transition.releases_capacity && !second.transition.releases_capacity);
            prop_assert_eq!(call.end_reason, Some(reasons[a]));
            prop_assert_eq!(call.ended_at, Some(DateTime::from_timestamp(1_800_000_010, 0).unwrap()));
            prop_assert!(call.last_status_at <= DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::seconds(10));
        }
    }
}
