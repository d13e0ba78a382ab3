//! What each provider's words for a call's state and ending mean to outdial: read from its
//! webhooks and from its answer when it is asked about a call (PROTOCOLS.md).

use crate::{AnsweredBy, CallEventKind, CallState, EndReason};

/// A call as its provider describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderCallState {
    /// Still going: queued, ringing or in progress at the provider.
    Live(CallState),
    /// Over, and how.
    Ended { reason: EndReason, answered_by: Option<AnsweredBy> },
}

impl ProviderCallState {
    /// The event that moves a call to this state.
    pub fn event(self) -> CallEventKind {
        match self {
            Self::Live(CallState::Ringing) => CallEventKind::Ringing,
            Self::Live(CallState::InProgress) => CallEventKind::Answered,
            Self::Live(_) => CallEventKind::Queued,
            Self::Ended { reason, .. } => CallEventKind::Ended { reason },
        }
    }
}

/// Twilio's `CallStatus` / `status`.
pub fn twilio(status: &str) -> Option<ProviderCallState> {
    let ended = |reason| ProviderCallState::Ended { reason, answered_by: None };
    Some(match status {
        "queued" | "initiated" => ProviderCallState::Live(CallState::Queued),
        "ringing" => ProviderCallState::Live(CallState::Ringing),
        "in-progress" | "answered" => ProviderCallState::Live(CallState::InProgress),
        "completed" => ended(EndReason::Completed),
        "busy" => ended(EndReason::Busy),
        "no-answer" => ended(EndReason::NoAnswer),
        "failed" => ended(EndReason::Failed),
        "canceled" => ended(EndReason::Canceled),
        _ => return None,
    })
}

/// Vapi's `endedReason`: how the call ended, and whether a machine answered.
pub fn vapi_ended_reason(reason: &str) -> (EndReason, Option<AnsweredBy>) {
    match reason {
        "customer-busy" => (EndReason::Busy, None),
        "customer-did-not-answer" | "customer-did-not-give-microphone-permission" => (EndReason::NoAnswer, None),
        "voicemail" => (EndReason::Completed, Some(AnsweredBy::MachineEnd)),
        "manually-canceled" => (EndReason::Canceled, None),
        r if r.contains("error") || r.contains("failed") || r.contains("fault") => (EndReason::Failed, None),
        _ => (EndReason::Completed, None),
    }
}

/// A Vapi call's `status` (`queued|ringing|in-progress|forwarding|ended`) with its `endedReason`.
pub fn vapi(status: &str, ended_reason: &str) -> Option<ProviderCallState> {
    Some(match status {
        "scheduled" | "queued" => ProviderCallState::Live(CallState::Queued),
        "ringing" => ProviderCallState::Live(CallState::Ringing),
        "in-progress" | "forwarding" => ProviderCallState::Live(CallState::InProgress),
        "ended" => {
            let (reason, answered_by) = vapi_ended_reason(ended_reason);
            ProviderCallState::Ended { reason, answered_by }
        }
        _ => return None,
    })
}

/// Retell's `disconnection_reason`: how the call ended, and whether a machine answered.
pub fn retell_disconnection(reason: &str) -> (EndReason, Option<AnsweredBy>) {
    match reason {
        "dial_busy" => (EndReason::Busy, None),
        "dial_no_answer" => (EndReason::NoAnswer, None),
        "voicemail_reached" => (EndReason::Completed, Some(AnsweredBy::MachineEnd)),
        r if r.starts_with("dial_") || r.starts_with("error") || r.contains("failed") => (EndReason::Failed, None),
        _ => (EndReason::Completed, None),
    }
}

/// A Retell call's `call_status` (`registered|not_connected|ongoing|ended|error`) with its `disconnection_reason`.
pub fn retell(status: &str, disconnection_reason: &str) -> Option<ProviderCallState> {
    Some(match status {
        "registered" => ProviderCallState::Live(CallState::Queued),
        "ongoing" => ProviderCallState::Live(CallState::InProgress),
        "ended" | "not_connected" => {
            let (reason, answered_by) = retell_disconnection(disconnection_reason);
            ProviderCallState::Ended { reason, answered_by }
        }
        "error" => ProviderCallState::Ended { reason: EndReason::Failed, answered_by: None },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_providers_words_read_as_one_state() {
        assert_eq!(twilio("ringing"), Some(ProviderCallState::Live(CallState::Ringing)));
        assert_eq!(twilio("no-answer"), Some(ProviderCallState::Ended { reason: EndReason::NoAnswer, answered_by: None }));
        assert_eq!(twilio("paused"), None);
        assert_eq!(vapi("forwarding", ""), Some(ProviderCallState::Live(CallState::InProgress)));
        assert_eq!(
            vapi("ended", "voicemail"),
            Some(ProviderCallState::Ended { reason: EndReason::Completed, answered_by: Some(AnsweredBy::MachineEnd) })
        );
        assert_eq!(retell("ended", "dial_busy"), Some(ProviderCallState::Ended { reason: EndReason::Busy, answered_by: None }));
        assert_eq!(retell("error", ""), Some(ProviderCallState::Ended { reason: EndReason::Failed, answered_by: None }));
        assert_eq!(retell("ongoing", ""), Some(ProviderCallState::Live(CallState::InProgress)));
    }
}
