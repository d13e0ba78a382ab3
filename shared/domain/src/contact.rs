//! The contact lifecycle: READY → DIALING → READY (a retry due at a time) or DONE with a
//! disposition, decided by the campaign's retry policy.

use crate::{CallDisposition, CallId, CallingArea, CampaignId, ContactId, E164, RetryOutcome, RetryPolicy, UsState};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactState {
    /// Waiting for its next attempt, due at `dueAt`.
    Ready,
    /// An attempt is in flight.
    Dialing,
    /// Finished, with a disposition.
    Done,
}

impl ContactState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Dialing => "dialing",
            Self::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ready, Self::Dialing, Self::Done].into_iter().find(|st| st.as_str() == s)
    }
}

/// Why a contact is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactDisposition {
    AnsweredHuman,
    Voicemail,
    NoAnswer,
    Busy,
    Failed,
    DoNotCall,
    Invalid,
    Canceled,
    MaxAttempts,
    /// Never dialed: no consent on record (imported before consent was recorded).
    NoConsent,
}

impl ContactDisposition {
    pub const ALL: [ContactDisposition; 10] = [
        Self::AnsweredHuman,
        Self::Voicemail,
        Self::NoAnswer,
        Self::Busy,
        Self::Failed,
        Self::DoNotCall,
        Self::Invalid,
        Self::Canceled,
        Self::MaxAttempts,
        Self::NoConsent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnsweredHuman => "answered_human",
            Self::Voicemail => "voicemail",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::DoNotCall => "do_not_call",
            Self::Invalid => "invalid",
            Self::Canceled => "canceled",
            Self::MaxAttempts => "max_attempts",
            Self::NoConsent => "no_consent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// How a contact's agreement to be called came to be on record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentSource {
    /// The row's own `consent` column said yes.
    File,
    /// The importer attested, for the whole file, that every contact in it agreed.
    Attestation,
}

/// The consent a contact was imported with (calls with an artificial voice need prior express
/// consent): where it came from, and who vouched for it when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    pub source: ConsentSource,
    /// How and where consent was given: the `consent_source` column, or the attestation's `consentSource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When consent was given (the `consent_at` column), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_at: Option<DateTime<Utc>>,
    /// The id of the API key that attested (attestations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
    /// When outdial recorded it: the import.
    pub recorded_at: DateTime<Utc>,
}

impl Consent {
    /// Consent a contact's own row records, recorded at `recorded_at`, with no detail or date yet.
    pub fn on_file(recorded_at: DateTime<Utc>) -> Self {
        Self { source: ConsentSource::File, detail: None, given_at: None, attested_by: None, recorded_at }
    }
}

/// A contact as it is added to a campaign.
#[derive(Clone, Debug, PartialEq)]
pub struct NewContact {
    pub phone: E164,
    pub name: Option<String>,
    pub timezone: Tz,
    /// Whose calling-hours rule applies: the row's `state`, else the number's area code.
    pub us_state: Option<UsState>,
    /// Higher is called first.
    pub priority: i32,
    /// Extra fields handed to the assistant as dynamic variables.
    pub variables: BTreeMap<String, String>,
    /// Every contact comes in with consent on record: an import refuses a row without.
    pub consent: Consent,
}

impl NewContact {
    /// A contact of `phone` in `timezone` who agreed as `consent` says, in the US state of its
    /// area code (if any).
    pub fn new(phone: E164, timezone: Tz, consent: Consent) -> Self {
        let us_state = UsState::of_number(&phone);
        Self { phone, name: None, timezone, us_state, priority: 0, variables: BTreeMap::new(), consent }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub id: ContactId,
    pub campaign_id: CampaignId,
    pub phone: E164,
    pub name: Option<String>,
    #[schema(value_type = String, example = "America/New_York")]
    pub timezone: Tz,
    /// The US state whose calling hours apply (from the `state` column or the area code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub us_state: Option<UsState>,
    pub priority: i32,
    pub state: ContactState,
    /// Attempts started so far.
    pub attempts: u32,
    /// While ready: when the next attempt may start. Once done: when it finished.
    pub due_at: DateTime<Utc>,
    pub disposition: Option<ContactDisposition>,
    pub last_call_id: Option<CallId>,
    pub variables: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    /// Which batch releases it (always 0 in continuous mode).
    #[serde(default)]
    pub batch: u32,
    /// The number its latest call went out from; its retries use it again when they can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<E164>,
    /// The consent on record for calling this contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

impl Contact {
    /// New contacts are due from the start of time, so among them priority alone decides the
    /// order, and they go before retries that are due later.
    pub fn ready(campaign_id: CampaignId, new: NewContact, now: DateTime<Utc>) -> Self {
        Self {
            id: ContactId::new(),
            campaign_id,
            phone: new.phone,
            name: new.name,
            timezone: new.timezone,
            us_state: new.us_state,
            priority: new.priority,
            state: ContactState::Ready,
            attempts: 0,
            due_at: DateTime::UNIX_EPOCH,
            disposition: None,
            last_call_id: None,
            variables: new.variables,
            created_at: now,
            batch: 0,
            caller_id: None,
            consent: Some(new.consent),
        }
    }

    /// Where it is for its calling hours: its zone and state.
    pub fn calling_area(&self) -> CallingArea {
        CallingArea { zone: self.timezone, state: self.us_state }
    }

    /// True when an event about call `call_id` (attempt `attempt`) may still decide this
    /// contact: it is this contact's latest attempt and no newer one has started.
    pub fn is_decided_by(&self, call_id: CallId, attempt: u32) -> bool {
        self.last_call_id == Some(call_id) && self.attempts == attempt
    }

    /// Applies the fate `call` decided (see `Campaign::fate_after_call`); a call withdrawn before
    /// it was placed gives its attempt back, whatever its fate.
    pub fn settle_call(&mut self, call: &crate::Call, fate: ContactFate) {
        let Some(ended_at) = call.ended_at else { return };
        self.settle(fate, ended_at);
        if call.was_withdrawn() {
            self.attempts = self.attempts.saturating_sub(1);
        }
    }

    /// Where it stands: its state and, once finished, its disposition.
    pub fn standing(&self) -> (ContactState, Option<ContactDisposition>) {
        (self.state, self.disposition)
    }

    /// Applies a fate decided by [`fate_after_call`] for a call that ended at `ended_at`.
    pub fn settle(&mut self, fate: ContactFate, ended_at: DateTime<Utc>) {
        match fate {
            ContactFate::Retry { due_at } | ContactFate::Requeue { due_at } => {
                self.state = ContactState::Ready;
                self.due_at = due_at;
                self.disposition = None;
            }
            ContactFate::Done(disposition) => {
                self.state = ContactState::Done;
                self.due_at = ended_at;
                self.disposition = Some(disposition);
            }
        }
    }
}

/// What happens to a contact after one of its calls ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactFate {
    Retry {
        due_at: DateTime<Utc>,
    },
    /// Back to ready without spending the attempt: the call was withdrawn before it was placed.
    Requeue {
        due_at: DateTime<Utc>,
    },
    Done(ContactDisposition),
}

impl ContactFate {
    pub fn is_done(self) -> bool {
        matches!(self, Self::Done(_))
    }
}

/// The retry policy applied to the outcome of attempt number `attempt`, which ended at `ended_at`.
pub fn fate_after_call(disposition: CallDisposition, attempt: u32, ended_at: DateTime<Utc>, policy: &RetryPolicy) -> ContactFate {
    let (retry_as, final_disposition) = match disposition {
        CallDisposition::AnsweredHuman => return ContactFate::Done(ContactDisposition::AnsweredHuman),
        CallDisposition::DoNotCall => return ContactFate::Done(ContactDisposition::DoNotCall),
        CallDisposition::NoConsent => return ContactFate::Done(ContactDisposition::NoConsent),
        CallDisposition::Canceled => return ContactFate::Done(ContactDisposition::Canceled),
        // never placed: the campaign decides when it is due again (its next opening)
        CallDisposition::OutsideWindow => return ContactFate::Requeue { due_at: ended_at },
        CallDisposition::Voicemail => (RetryOutcome::Voicemail, ContactDisposition::Voicemail),
        CallDisposition::NoAnswer => (RetryOutcome::NoAnswer, ContactDisposition::NoAnswer),
        CallDisposition::Busy => (RetryOutcome::Busy, ContactDisposition::Busy),
        CallDisposition::Failed => (RetryOutcome::Failed, ContactDisposition::Failed),
    };
    if !policy.retries(retry_as) {
        ContactFate::Done(final_disposition)
    } else if attempt >= policy.max_attempts() {
        ContactFate::Done(ContactDisposition::MaxAttempts)
    } else {
        ContactFate::Retry { due_at: ended_at + policy.delay() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn retry_policy_decides_the_fate() {
        let policy = RetryPolicy::default();
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(fate_after_call(CallDisposition::Busy, 1, t, &policy), ContactFate::Retry { due_at: t + Duration::minutes(30) });
        assert_eq!(fate_after_call(CallDisposition::NoAnswer, 2, t, &policy), ContactFate::Retry { due_at: t + Duration::minutes(30) });
        assert_eq!(fate_after_call(CallDisposition::NoAnswer, 3, t, &policy), ContactFate::Done(ContactDisposition::MaxAttempts));
        assert_eq!(fate_after_call(CallDisposition::Voicemail, 1, t, &policy), ContactFate::Done(ContactDisposition::Voicemail));
        assert_eq!(fate_after_call(CallDisposition::AnsweredHuman, 1, t, &policy), ContactFate::Done(ContactDisposition::AnsweredHuman));
        assert_eq!(fate_after_call(CallDisposition::DoNotCall, 1, t, &policy), ContactFate::Done(ContactDisposition::DoNotCall));
        let voicemail_retries = RetryPolicy::parse(2, 0, [RetryOutcome::Voicemail]).unwrap();
        assert_eq!(fate_after_call(CallDisposition::Voicemail, 1, t, &voicemail_retries), ContactFate::Retry { due_at: t });
        assert_eq!(fate_after_call(CallDisposition::Busy, 1, t, &voicemail_retries), ContactFate::Done(ContactDisposition::Busy));
    }

    #[test]
    fn disposition_names_round_trip() {
        for d in ContactDisposition::ALL {
            assert_eq!(ContactDisposition::parse(d.as_str()), Some(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }
}
