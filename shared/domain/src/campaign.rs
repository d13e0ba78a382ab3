//! Campaigns: a list of contacts dialed under a cap, a calling window and a retry policy.

use crate::{
    Assistant, AssistantId, Call, CallDisposition, CallingWindow, CampaignId, Cap, Contact, ContactDisposition, ContactFate, E164,
    EffectiveWindow, EndReason, OrgId, ParseError, ProviderKind, Region, RetryPolicy, UsState,
    contact::fate_after_call,
    policy::{CallingWindowSpec, RetryPolicySpec},
};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Running,
    Paused,
    Completed,
    Canceled,
}

impl CampaignStatus {
    /// Whether moving to this status marks the campaign's first start (`startedAt`, kept once set).
    pub fn marks_start(self) -> bool {
        self == Self::Running
    }

    /// Whether moving to this status marks the campaign's end (`completedAt`).
    pub fn marks_end(self) -> bool {
        matches!(self, Self::Completed | Self::Canceled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Running, Self::Paused, Self::Completed, Self::Canceled].into_iter().find(|st| st.as_str() == s)
    }
}

/// Who places the campaign's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallProvider {
    /// Twilio dials; the media bridge carries the audio to an ElevenLabs agent.
    Twilio,
    /// ElevenLabs' own outbound calls.
    Elevenlabs,
    Vapi,
    Retell,
    /// In-process simulated calls (the demo, tests).
    Simulator,
}

impl CallProvider {
    pub const ALL: [CallProvider; 5] = [Self::Twilio, Self::Elevenlabs, Self::Vapi, Self::Retell, Self::Simulator];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Elevenlabs => "elevenlabs",
            Self::Vapi => "vapi",
            Self::Retell => "retell",
            Self::Simulator => "simulator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whose webhooks report this provider's calls: the simulator speaks Twilio's.
    pub fn reported_by(self) -> Self {
        match self {
            Self::Simulator => Self::Twilio,
            other => other,
        }
    }

    /// Whether webhooks from `sender` may report this provider's calls: its own reporter, and
    /// ElevenLabs for the calls whose conversation the bridge holds with an ElevenLabs agent
    /// (Twilio's; the simulator's, which sends ElevenLabs' post-call report too).
    pub fn hears_from(self, sender: Self) -> bool {
        sender == self.reported_by() || (sender == Self::Elevenlabs && matches!(self, Self::Twilio | Self::Simulator))
    }

    /// The provider that calls with an assistant of `kind` when none is named.
    pub fn for_assistant(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Vapi => Self::Vapi,
            ProviderKind::Elevenlabs => Self::Elevenlabs,
            ProviderKind::Retell => Self::Retell,
            ProviderKind::Simulator => Self::Simulator,
        }
    }

    /// Whether this provider can put an assistant of `kind` on a call.
    pub fn carries(self, kind: ProviderKind) -> bool {
        match self {
            Self::Twilio => kind == ProviderKind::Elevenlabs,
            _ => Self::for_assistant(kind) == self,
        }
    }
}

/// How contacts are released for dialing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DialMode {
    /// Any ready contact may be dialed.
    #[default]
    Continuous,
    /// Contacts are dialed `batchSize` at a time; the next batch starts when the previous one is finished.
    Batch,
}

/// What a call that reaches an answering machine does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoicemailAction {
    #[default]
    Hangup,
    LeaveMessage,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Voicemail {
    pub action: VoicemailAction,
    /// Spoken after the beep when the action is `leave_message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where finished calls are delivered: the organisation's CRM connections (`/crm/connections`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrmTarget {
    /// Campaigns made before connections existed kept a target of another shape: it reads as none.
    #[serde(default)]
    pub connection_ids: Vec<crate::ConnectionId>,
}

impl CrmTarget {
    pub const MAX_CONNECTIONS: usize = 10;

    fn validate(&self) -> Result<(), ParseError> {
        let ids = &self.connection_ids;
        if ids.is_empty() || ids.len() > Self::MAX_CONNECTIONS {
            return Err(ParseError::new("crm.connectionIds", format!("needs 1–{} CRM connection ids", Self::MAX_CONNECTIONS)));
        }
        if ids.iter().enumerate().any(|(i, id)| ids[..i].contains(id)) {
            return Err(ParseError::new("crm.connectionIds", "names a connection twice"));
        }
        Ok(())
    }
}

/// How a campaign dials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignSettings {
    pub provider: CallProvider,
    /// The numbers calls are made from, used in rotation.
    pub caller_ids: Vec<E164>,
    /// `lru` (default) or `local`: how a call's number is picked from `callerIds`.
    #[serde(default)]
    pub caller_id_strategy: crate::caller_id::CallerIdStrategy,
    /// Country in which national numbers of imported contacts are read (ISO 3166-1 alpha-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "US")]
    pub region: Option<Region>,
    #[serde(default)]
    pub mode: DialMode,
    /// Contacts per batch in `batch` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    #[serde(default)]
    pub calling_window: CallingWindow,
    /// Time zone of contacts whose own zone is unknown.
    #[schema(value_type = String, example = "America/New_York")]
    pub timezone: Tz,
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    #[serde(default)]
    pub voicemail: Voicemail,
    #[serde(default)]
    pub recording: bool,
    pub max_call_seconds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<CrmTarget>,
    /// When the campaign starts by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
}

impl CampaignSettings {
    pub const DEFAULT_MAX_CALL_SECONDS: u32 = 600;
    pub const MAX_CALL_SECONDS: std::ops::RangeInclusive<i64> = 30..=7200;
    pub const MAX_BATCH_SIZE: i64 = 100_000;
    pub const MAX_CALLER_IDS: usize = 100;
    pub const MAX_VOICEMAIL_CHARS: usize = 1000;

    /// The country national numbers are read in: the campaign's, else its first caller ID's.
    pub fn import_region(&self) -> Option<Region> {
        self.region.or_else(|| self.caller_ids.first().and_then(E164::region))
    }
}

impl Default for CampaignSettings {
    fn default() -> Self {
        Self {
            provider: CallProvider::Simulator,
            caller_ids: Vec::new(),
            caller_id_strategy: crate::caller_id::CallerIdStrategy::default(),
            region: None,
            mode: DialMode::Continuous,
            batch_size: None,
            calling_window: CallingWindow::default(),
            timezone: Tz::America__New_York,
            retry_policy: RetryPolicy::default(),
            voicemail: Voicemail::default(),
            recording: false,
            max_call_seconds: Self::DEFAULT_MAX_CALL_SECONDS,
            crm: None,
            start_at: None,
        }
    }
}

/// A campaign as the API receives it: loosely typed, so that every invalid field can be reported at once.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignSpec {
    #[schema(example = "Spring renewals")]
    pub name: String,
    /// An active assistant of the organisation.
    pub assistant_id: Option<String>,
    /// `twilio`, `elevenlabs`, `vapi`, `retell` or `simulator`; by default the assistant's own provider.
    #[schema(example = "vapi")]
    pub provider: Option<String>,
    /// E.164 numbers, at least one.
    #[schema(example = json!(["+14155550100"]))]
    #[serde(default)]
    pub caller_ids: Vec<String>,
    /// `lru` (default): the least recently used number; `local`: one with the contact's area
    /// code, else one in its state, else the least recently used.
    #[schema(example = "local")]
    pub caller_id_strategy: Option<String>,
    #[schema(minimum = 1, maximum = 50, example = 8)]
    pub cap: Option<i64>,
    /// `continuous` (default) or `batch`.
    pub mode: Option<String>,
    pub batch_size: Option<i64>,
    #[schema(value_type = Option<CallingWindowSpec>)]
    pub calling_window: Option<serde_json::Value>,
    #[schema(example = "America/New_York")]
    pub timezone: Option<String>,
    /// ISO country in which national numbers are read; by default the first caller ID's.
    #[schema(example = "US")]
    pub region: Option<String>,
    #[schema(value_type = Option<RetryPolicySpec>)]
    pub retry_policy: Option<serde_json::Value>,
    #[schema(value_type = Option<Voicemail>)]
    pub voicemail: Option<serde_json::Value>,
    pub recording: Option<bool>,
    #[schema(minimum = 30, maximum = 7200, example = 600)]
    pub max_call_seconds: Option<i64>,
    #[schema(value_type = Option<CrmTarget>)]
    pub crm: Option<serde_json::Value>,
    /// RFC 3339; the campaign starts by itself then.
    pub start_at: Option<DateTime<Utc>>,
}

/// A campaign as it is created.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCampaign {
    pub name: String,
    pub cap: Cap,
    pub settings: CampaignSettings,
    pub assistant_id: Option<AssistantId>,
}

/// A nested part of a spec read with its own parser, its errors kept under `field`.
fn nested<T: serde::de::DeserializeOwned>(
    field: &'static str,
    value: Option<serde_json::Value>,
    errors: &mut Vec<ParseError>,
) -> Option<T> {
    serde_json::from_value(value?).map_err(|e| errors.push(ParseError::new(field, e.to_string()))).ok()
}

/// The value, or None with its error recorded.
fn kept<T>(result: Result<T, ParseError>, errors: &mut Vec<ParseError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

fn parse_name(name: &str) -> Result<String, ParseError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NewCampaign::MAX_NAME_CHARS {
        return Err(ParseError::new("name", format!("must be 1–{} characters", NewCampaign::MAX_NAME_CHARS)));
    }
    Ok(name.to_string())
}

/// An IANA time zone name such as `America/Chicago`.
pub fn parse_timezone(field: &'static str, name: &str) -> Result<Tz, ParseError> {
    name.trim().parse::<Tz>().map_err(|_| ParseError::new(field, format!("{name:?} is not an IANA time zone such as \"America/Chicago\"")))
}

fn validate_voicemail(v: Voicemail) -> Result<Voicemail, ParseError> {
    let message = v.message.as_deref().map(str::trim).filter(|m| !m.is_empty());
    match (v.action, message) {
        (VoicemailAction::LeaveMessage, None) => Err(ParseError::new("voicemail.message", "is required when the action is leave_message")),
        (_, Some(m)) if m.chars().count() > CampaignSettings::MAX_VOICEMAIL_CHARS => {
            Err(ParseError::new("voicemail.message", format!("is longer than {} characters", CampaignSettings::MAX_VOICEMAIL_CHARS)))
        }
        (VoicemailAction::Hangup, Some(_)) => Err(ParseError::new("voicemail.message", "only applies when the action is leave_message")),
        (action, m) => Ok(Voicemail { action, message: m.map(str::to_string) }),
    }
}

/// A campaign read from its spec, before its assistant is looked up.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignPlan {
    pub assistant_id: AssistantId,
    /// The provider the spec named, if any.
    pub provider: Option<CallProvider>,
    new: NewCampaign,
}

impl CampaignPlan {
    /// The campaign made by `assistant` (the one `assistant_id` names), or why it cannot be.
    pub fn with_assistant(self, assistant: &Assistant) -> Result<NewCampaign, Vec<ParseError>> {
        let mut errors = Vec::new();
        if !assistant.active {
            errors.push(ParseError::new("assistantId", format!("assistant {} is inactive; activate it or pick another", assistant.id)));
        }
        let provider = self.provider.unwrap_or(CallProvider::for_assistant(assistant.provider));
        if !provider.carries(assistant.provider) {
            errors.push(ParseError::new(
                "provider",
                format!("{} cannot call with a {} assistant", provider.as_str(), assistant.provider.as_str()),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut new = self.new;
        new.settings.provider = provider;
        new.assistant_id = Some(assistant.id);
        Ok(new)
    }
}

impl NewCampaign {
    pub const MAX_NAME_CHARS: usize = 200;

    pub fn parse(name: &str, cap: Cap, settings: CampaignSettings) -> Result<Self, ParseError> {
        Ok(Self { name: parse_name(name)?, cap, settings, assistant_id: None })
    }

    /// The campaign `spec` describes, or every reason it cannot be one. `now` bounds `startAt`.
    pub fn from_spec(spec: CampaignSpec, now: DateTime<Utc>) -> Result<CampaignPlan, Vec<ParseError>> {
        let e = &mut Vec::new();
        let name = kept(parse_name(&spec.name), e);
        let assistant_id = match spec.assistant_id.as_deref() {
            None => kept(Err(ParseError::new("assistantId", "is required: the id of an active assistant of the organisation")), e),
            Some(id) => {
                kept(AssistantId::parse(id).map_err(|_| ParseError::new("assistantId", format!("{id:?} is not an assistant id"))), e)
            }
        };
        let provider = spec.provider.as_deref().and_then(|p| {
            let known = CallProvider::parse(p);
            kept(
                known
                    .ok_or_else(|| ParseError::new("provider", format!("{p:?} is not one of twilio, elevenlabs, vapi, retell, simulator"))),
                e,
            )
        });
        if spec.caller_ids.is_empty() {
            e.push(ParseError::new("callerIds", "needs at least one E.164 number to call from"));
        } else if spec.caller_ids.len() > CampaignSettings::MAX_CALLER_IDS {
            e.push(ParseError::new("callerIds", format!("has more than {} numbers", CampaignSettings::MAX_CALLER_IDS)));
        }
        let mut caller_ids = Vec::with_capacity(spec.caller_ids.len());
        for (i, raw) in spec.caller_ids.into_iter().enumerate() {
            let parsed = E164::try_from(raw).map_err(|err| ParseError::new("callerIds", format!("[{i}] {}", err.reason)));
            if let Some(number) = kept(parsed, e)
                && !caller_ids.contains(&number)
            {
                caller_ids.push(number);
            }
        }
        let cap = spec.cap.map_or(Some(Cap::DEFAULT), |c| kept(Cap::parse(c), e));
        let mode = match spec.mode.as_deref() {
            None | Some("continuous") => Some(DialMode::Continuous),
            Some("batch") => Some(DialMode::Batch),
            Some(other) => kept(Err(ParseError::new("mode", format!("{other:?} is not continuous or batch"))), e),
        };
        let batch_size = match (mode, spec.batch_size) {
            (Some(DialMode::Batch), None) => kept(Err(ParseError::new("batchSize", "is required in batch mode")), e),
            (Some(DialMode::Batch), Some(n)) if !(1..=CampaignSettings::MAX_BATCH_SIZE).contains(&n) => {
                kept(Err(ParseError::new("batchSize", format!("{n} is outside 1–{}", CampaignSettings::MAX_BATCH_SIZE))), e)
            }
            (Some(DialMode::Batch), Some(n)) => Some(n as u32),
            (_, Some(_)) => kept(Err(ParseError::new("batchSize", "only applies in batch mode")), e),
            (_, None) => None,
        };
        let calling_window = match spec.calling_window {
            None => Some(CallingWindow::default()),
            value => nested::<CallingWindowSpec>("callingWindow", value, e).and_then(|w| kept(CallingWindow::try_from(w), e)),
        };
        let timezone = match spec.timezone.as_deref() {
            None => Some(Tz::America__New_York),
            Some(tz) => kept(parse_timezone("timezone", tz), e),
        };
        let region = spec.region.as_deref().and_then(|r| kept(Region::parse(r), e));
        let caller_id_strategy = match spec.caller_id_strategy.as_deref() {
            None => crate::caller_id::CallerIdStrategy::default(),
            Some(raw) => kept(crate::caller_id::CallerIdStrategy::parse(raw), e).unwrap_or_default(),
        };
        let retry_policy = match spec.retry_policy {
            None => Some(RetryPolicy::default()),
            value => nested::<RetryPolicySpec>("retryPolicy", value, e).and_then(|p| kept(RetryPolicy::try_from(p), e)),
        };
        let voicemail = match spec.voicemail {
            None => Some(Voicemail::default()),
            value => nested::<Voicemail>("voicemail", value, e).and_then(|v| kept(validate_voicemail(v), e)),
        };
        let max_call_seconds = match spec.max_call_seconds {
            None => Some(CampaignSettings::DEFAULT_MAX_CALL_SECONDS),
            Some(s) if CampaignSettings::MAX_CALL_SECONDS.contains(&s) => Some(s as u32),
            Some(s) => {
                let (lo, hi) = CampaignSettings::MAX_CALL_SECONDS.into_inner();
                kept(Err(ParseError::new("maxCallSeconds", format!("{s} is outside {lo}–{hi} seconds"))), e)
            }
        };
        let crm = nested::<CrmTarget>("crm", spec.crm, e).and_then(|t| kept(t.validate().map(|()| t), e));
        if let Some(at) = spec.start_at
            && at <= now
        {
            e.push(ParseError::new("startAt", format!("{} is not in the future", at.to_rfc3339())));
        }
        let (
            Some(name),
            Some(assistant_id),
            Some(cap),
            Some(mode),
            Some(calling_window),
            Some(timezone),
            Some(retry_policy),
            Some(voicemail),
            Some(max_call_seconds),
        ) = (name, assistant_id, cap, mode, calling_window, timezone, retry_policy, voicemail, max_call_seconds)
        else {
            return Err(std::mem::take(e));
        };
        if !e.is_empty() {
            return Err(std::mem::take(e));
        }
        let settings = CampaignSettings {
            // the assistant decides it when the spec does not: see CampaignPlan::with_assistant
            provider: provider.unwrap_or(CallProvider::Simulator),
            caller_ids,
            caller_id_strategy,
            region,
            mode,
            batch_size,
            calling_window,
            timezone,
            retry_policy,
            voicemail,
            recording: spec.recording.unwrap_or(false),
            max_call_seconds,
            crm,
            start_at: spec.start_at,
        };
        Ok(CampaignPlan { assistant_id, provider, new: NewCampaign { name, cap, settings, assistant_id: Some(assistant_id) } })
    }

    /// The campaign's calls are made by `assistant`.
    pub fn with_assistant(self, assistant: AssistantId) -> Self {
        Self { assistant_id: Some(assistant), ..self }
    }
}

/// Counters kept on the campaign record, moved in the same transaction as the rows they count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignCounters {
    /// Calls not yet terminal; never above the cap.
    pub active_calls: u32,
    pub contacts_total: u64,
    pub contacts_done: u64,
    /// Calls ever placed (attempts).
    pub calls_total: u64,
}

impl CampaignCounters {
    /// Nothing left to dial and nothing in flight.
    pub fn is_finished(&self) -> bool {
        self.active_calls == 0 && self.contacts_done == self.contacts_total
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    pub id: CampaignId,
    pub org_id: OrgId,
    pub name: String,
    pub status: CampaignStatus,
    pub cap: Cap,
    #[serde(flatten)]
    pub settings: CampaignSettings,
    /// The assistant that speaks on the campaign's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<AssistantId>,
    /// Kept on the record; the API shows them as `progress`.
    #[serde(skip)]
    pub counters: CampaignCounters,
    /// In batch mode, the batch being dialed.
    #[serde(skip)]
    pub current_batch: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Why its scheduled start (`startAt`) did not start it, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_refused: Option<StartRefusal>,
}

/// A scheduled start that was refused: when, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartRefusal {
    pub at: DateTime<Utc>,
    /// A stable name: `emergency-stop`, `launch-checks-failed`.
    pub reason: String,
    pub detail: String,
}

impl Campaign {
    /// Moves the campaign to `to` at `now`, stamping its first start and its end as each store
    /// records them.
    pub fn move_to(&mut self, to: CampaignStatus, now: DateTime<Utc>) {
        self.status = to;
        if to.marks_start() && self.started_at.is_none() {
            self.started_at = Some(now);
        }
        if to.marks_end() {
            self.completed_at = Some(now);
        }
    }

    pub fn draft(org_id: OrgId, new: NewCampaign, now: DateTime<Utc>) -> Self {
        Self {
            id: CampaignId::new(),
            org_id,
            name: new.name,
            status: CampaignStatus::Draft,
            cap: new.cap,
            settings: new.settings,
            assistant_id: new.assistant_id,
            counters: CampaignCounters::default(),
            current_batch: 0,
            created_at: now,
            started_at: None,
            completed_at: None,
            start_refused: None,
        }
    }

    /// When a contact in `state` may be called: the campaign's window within the legal hours.
    pub fn effective_window(&self, state: Option<UsState>) -> EffectiveWindow {
        EffectiveWindow::of(&self.settings.calling_window, state)
    }

    /// How long a completed campaign still holds its assistant: its late reports and retries may need it.
    pub const ASSISTANT_HOLD_AFTER_COMPLETION: TimeDelta = TimeDelta::hours(24);

    /// Whether the campaign keeps its assistant from being deleted at `now`: while it may still dial
    /// (draft, running, paused) and for a day after it completed.
    pub fn holds_assistant(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            CampaignStatus::Draft | CampaignStatus::Running | CampaignStatus::Paused => true,
            CampaignStatus::Completed => self.completed_at.is_none_or(|at| now - at < Self::ASSISTANT_HOLD_AFTER_COMPLETION),
            CampaignStatus::Canceled => false,
        }
    }

    /// Every reason the campaign cannot start now. `assistant` is the one it names (None when it
    /// is gone); `missing_credentials` the variables its provider still needs; `registered` the
    /// organisation's registrations of the campaign's caller IDs.
    pub fn unmet_launch_checks(
        &self,
        assistant: Option<&Assistant>,
        missing_credentials: &[&str],
        registered: &[crate::CallerId],
        missing_connections: &[crate::ConnectionId],
    ) -> Vec<UnmetCheck> {
        let mut unmet = Vec::new();
        if self.counters.contacts_total == self.counters.contacts_done {
            unmet.push(UnmetCheck::NoContacts);
        }
        match assistant {
            None => unmet.push(UnmetCheck::AssistantMissing),
            Some(a) if !a.active => unmet.push(UnmetCheck::AssistantInactive { assistant: a.id }),
            Some(_) => {}
        }
        if self.settings.caller_ids.is_empty() {
            unmet.push(UnmetCheck::NoCallerId);
        }
        let unregistered = crate::caller_id::unregistered_caller_ids(&self.settings.caller_ids, registered, self.settings.provider);
        if !unregistered.is_empty() {
            unmet.push(UnmetCheck::CallerIdNotRegistered {
                provider: self.settings.provider,
                phones: unregistered.into_iter().cloned().collect(),
            });
        }
        if !missing_connections.is_empty() {
            unmet.push(UnmetCheck::CrmConnectionMissing { ids: missing_connections.to_vec() });
        }
        if !missing_credentials.is_empty() {
            unmet.push(UnmetCheck::ProviderNotConfigured {
                provider: self.settings.provider,
                variables: missing_credentials.iter().map(|v| v.to_string()).collect(),
            });
        }
        if self.settings.calling_window.is_empty() {
            unmet.push(UnmetCheck::CallingWindowEmpty);
        }
        unmet.extend(self.native_limits_unmet(assistant));
        unmet
    }

    /// What the campaign asks of each call that its provider cannot be told per call. ElevenLabs
    /// native calls take neither a time limit nor a voicemail message per call: the limit is the
    /// agent's, and its voicemail detection can only hang up.
    fn native_limits_unmet(&self, assistant: Option<&Assistant>) -> Vec<UnmetCheck> {
        let provider = self.settings.provider;
        if provider != CallProvider::Elevenlabs {
            return Vec::new();
        }
        let mut unmet = Vec::new();
        if self.settings.voicemail.action == VoicemailAction::LeaveMessage {
            unmet.push(UnmetCheck::ProviderCannot {
                provider,
                what: "leave a voicemail message on a native call (its voicemail detection hangs up): set settings.voicemail.action \
                       to hangup, or call through Twilio (provider twilio), whose bridge leaves the message"
                    .into(),
            });
        }
        let limit = self.settings.max_call_seconds;
        if let Some(a) = assistant.filter(|a| a.config.max_duration_seconds != Some(limit)) {
            let agent_limit = a.config.max_duration_seconds.map_or("unset".to_string(), |s| format!("{s} seconds"));
            unmet.push(UnmetCheck::ProviderCannot {
                provider,
                what: format!(
                    "limit one call's length, so the agent's own limit applies (config.maxDurationSeconds: {agent_limit}): set it to \
                     {limit}, the campaign's maxCallSeconds, with PATCH /assistants/{}",
                    a.id
                ),
            });
        }
        unmet
    }

    /// What happens to `contact` after `call` ended (None while it has not): the retry policy,
    /// except that a canceled campaign retries nothing, and a call withdrawn before it was placed
    /// gives its attempt back, due again at the contact's next opening when its window had closed.
    pub fn fate_after_call(&self, call: &Call, contact: &Contact) -> Option<ContactFate> {
        let (disposition, ended_at) = (call.disposition()?, call.ended_at?);
        let fate = if call.was_withdrawn() && !matches!(disposition, CallDisposition::DoNotCall | CallDisposition::NoConsent) {
            let due_at = match call.end_reason {
                Some(EndReason::OutsideWindow) => self
                    .effective_window(contact.us_state)
                    .next_opening(ended_at, contact.timezone)
                    .unwrap_or(ended_at + TimeDelta::days(1)),
                _ => ended_at,
            };
            ContactFate::Requeue { due_at }
        } else {
            fate_after_call(disposition, call.attempt, ended_at, &self.settings.retry_policy)
        };
        Some(match fate {
            ContactFate::Retry { .. } | ContactFate::Requeue { .. } if self.status == CampaignStatus::Canceled => {
                ContactFate::Done(ContactDisposition::Canceled)
            }
            fate => fate,
        })
    }

    /// Slots free under the cap right now.
    pub fn free_slots(&self) -> u32 {
        self.cap.get().saturating_sub(self.counters.active_calls)
    }
}

/// One reason a campaign cannot start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnmetCheck {
    NoContacts,
    AssistantMissing,
    AssistantInactive {
        assistant: AssistantId,
    },
    NoCallerId,
    /// Caller IDs the organisation has not registered (for Vapi and ElevenLabs: with the number's id there).
    CallerIdNotRegistered {
        provider: CallProvider,
        phones: Vec<E164>,
    },
    /// CRM connections the campaign names that no longer exist.
    CrmConnectionMissing {
        ids: Vec<crate::ConnectionId>,
    },
    ProviderNotConfigured {
        provider: CallProvider,
        variables: Vec<String>,
    },
    CallingWindowEmpty,
    /// The assistant's tools are not declared at `OUTDIAL_PUBLIC_URL` (None: it is not set).
    ToolsUndeclared {
        assistant: AssistantId,
        public_url: Option<String>,
    },
    /// Something the campaign asks of each call that its provider cannot do per call.
    ProviderCannot {
        provider: CallProvider,
        what: String,
    },
}

impl UnmetCheck {
    /// A stable name for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoContacts => "no-contacts",
            Self::AssistantMissing => "assistant-missing",
            Self::AssistantInactive { .. } => "assistant-inactive",
            Self::NoCallerId => "no-caller-id",
            Self::CallerIdNotRegistered { .. } => "caller-id-not-registered",
            Self::CrmConnectionMissing { .. } => "crm-connection-missing",
            Self::ProviderNotConfigured { .. } => "provider-not-configured",
            Self::CallingWindowEmpty => "calling-window-empty",
            Self::ToolsUndeclared { .. } => "assistant-tools-undeclared",
            Self::ProviderCannot { .. } => "provider-cannot",
        }
    }

    /// What is wrong and what to do about it.
    pub fn message(&self) -> String {
        match self {
            Self::NoContacts => "the campaign has no contacts left to call; import some with POST /campaigns/{id}/contacts".into(),
            Self::AssistantMissing => "the campaign names no assistant, or it no longer exists".into(),
            Self::AssistantInactive { assistant } => {
                format!("assistant {assistant} is inactive; activate it with PATCH /assistants/{assistant}")
            }
            Self::NoCallerId => "the campaign has no caller ID to call from".into(),
            Self::CallerIdNotRegistered { provider, phones } => {
                let phones = phones.iter().map(E164::as_str).collect::<Vec<_>>().join(", ");
                let how = crate::caller_id::registration_hint(*provider);
                format!("caller IDs {phones} are not registered to this organisation; register each with POST /caller-ids{how}")
            }
            Self::CrmConnectionMissing { ids } => {
                let ids = ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                format!("CRM connections {ids} no longer exist; create them again (POST /crm/connections) or name others")
            }
            Self::ProviderNotConfigured { provider, variables } => {
                format!("{} credentials are not configured: set {}", provider.as_str(), variables.join(" and "))
            }
            Self::CallingWindowEmpty => "the calling window has no days, so no contact could ever be called".into(),
            Self::ToolsUndeclared { assistant, public_url: None } => format!(
                "assistant {assistant}'s tools point nowhere: set OUTDIAL_PUBLIC_URL (this deployment's public base URL), then save \
                 the assistant again (PATCH /assistants/{assistant}) to declare them there"
            ),
            Self::ToolsUndeclared { assistant, public_url: Some(url) } => format!(
                "assistant {assistant}'s tools are not declared at {url}: save the assistant again (PATCH /assistants/{assistant}) \
                 to declare them there (an ElevenLabs agent's also need OUTDIAL_SECRET_KEY)"
            ),
            Self::ProviderCannot { provider, what } => format!("{} cannot {what}", provider.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_stamps_the_first_start_and_the_end() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let new = NewCampaign::parse("c", Cap::DEFAULT, CampaignSettings::default()).unwrap();
        let mut c = Campaign::draft(OrgId::new(), new, t);
        c.move_to(CampaignStatus::Running, t);
        c.move_to(CampaignStatus::Paused, t + TimeDelta::hours(1));
        c.move_to(CampaignStatus::Running, t + TimeDelta::hours(2));
        assert_eq!((c.started_at, c.completed_at), (Some(t), None), "the first start is kept");
        c.move_to(CampaignStatus::Completed, t + TimeDelta::hours(3));
        assert_eq!((c.status, c.completed_at), (CampaignStatus::Completed, Some(t + TimeDelta::hours(3))));
    }

    #[test]
    fn a_campaign_holds_its_assistant_until_a_day_after_it_completed() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let new = NewCampaign::parse("c", Cap::DEFAULT, CampaignSettings::default()).unwrap().with_assistant(AssistantId::new());
        let mut c = Campaign::draft(OrgId::new(), new, t);
        for status in [CampaignStatus::Draft, CampaignStatus::Running, CampaignStatus::Paused] {
            c.status = status;
            assert!(c.holds_assistant(t + TimeDelta::days(400)));
        }
        c.status = CampaignStatus::Completed;
        c.completed_at = Some(t);
        assert!(c.holds_assistant(t + TimeDelta::hours(23)));
        assert!(!c.holds_assistant(t + TimeDelta::hours(24)));
        c.status = CampaignStatus::Canceled;
        assert!(!c.holds_assistant(t));
    }

    fn spec(json: serde_json::Value) -> CampaignSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_spec_gets_the_documented_defaults() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let assistant = AssistantId::new();
        let plan = NewCampaign::from_spec(
            spec(serde_json::json!({"name": "Renewals", "assistantId": assistant.to_string(), "callerIds": ["+14155550100"]})),
            t,
        )
        .unwrap();
        assert_eq!(plan.provider, None);
        let s = &plan.new.settings;
        assert_eq!(plan.new.cap, Cap::DEFAULT);
        assert_eq!((s.mode, s.batch_size, s.recording, s.max_call_seconds), (DialMode::Continuous, None, false, 600));
        assert_eq!(s.calling_window, CallingWindow::default());
        assert_eq!(s.retry_policy, RetryPolicy::default());
        assert_eq!(s.voicemail.action, VoicemailAction::Hangup);
        assert_eq!(s.import_region().map(|r| r.code().to_string()).as_deref(), Some("US"), "the first caller ID's country");
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let errors = NewCampaign::from_spec(
            spec(serde_json::json!({
                "name": " ", "provider": "skype", "callerIds": ["+1415", "not"], "cap": 51, "mode": "batch",
                "callingWindow": {"days": ["mon"], "start": "21:00", "end": "08:00"}, "timezone": "Mars/Base",
                "retryPolicy": {"maxAttempts": 0, "delayMinutes": 5, "retryOn": []}, "voicemail": {"action": "leave_message"},
                "maxCallSeconds": 5, "crm": {"connectionIds": []}, "startAt": "2020-01-01T00:00:00Z", "region": "XX"
            })),
            t,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        for field in [
            "name",
            "assistantId",
            "provider",
            "callerIds",
            "cap",
            "batchSize",
            "callingWindow",
            "timezone",
            "region",
            "retryPolicy.maxAttempts",
            "voicemail.message",
            "maxCallSeconds",
            "crm.connectionIds",
            "startAt",
        ] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
        assert_eq!(fields.iter().filter(|f| **f == "callerIds").count(), 2, "each bad number is named");
    }

    #[test]
    fn the_assistant_decides_the_provider_and_must_be_active() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let config = crate::assistant::templates()[0].config.clone();
        let mut assistant = Assistant::new(OrgId::new(), crate::NewAssistant::local("a", ProviderKind::Elevenlabs, config).unwrap(), t);
        let plan = |provider: Option<&str>| {
            let mut json = serde_json::json!({"name": "c", "assistantId": assistant.id.to_string(), "callerIds": ["+14155550100"]});
            if let Some(p) = provider {
                json["provider"] = p.into();
            }
            NewCampaign::from_spec(spec(json), t).unwrap()
        };
        assert_eq!(plan(None).with_assistant(&assistant).unwrap().settings.provider, CallProvider::Elevenlabs);
        assert_eq!(plan(Some("twilio")).with_assistant(&assistant).unwrap().settings.provider, CallProvider::Twilio);
        assert_eq!(plan(Some("vapi")).with_assistant(&assistant).unwrap_err()[0].field, "provider");
        assistant.active = false;
        assert_eq!(plan(None).with_assistant(&assistant).unwrap_err()[0].field, "assistantId");
    }

    #[test]
    fn launch_checks_list_everything_missing() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let settings = CampaignSettings { calling_window: CallingWindow::parse([], "08:00", "21:00").unwrap(), ..Default::default() };
        let c = Campaign::draft(OrgId::new(), NewCampaign::parse("c", Cap::DEFAULT, settings).unwrap(), t);
        let codes: Vec<_> = c.unmet_launch_checks(None, &["TWILIO_AUTH_TOKEN"], &[], &[]).iter().map(UnmetCheck::code).collect();
        assert_eq!(codes, ["no-contacts", "assistant-missing", "no-caller-id", "provider-not-configured", "calling-window-empty"]);
        let mut ready = c.clone();
        ready.counters.contacts_total = 1;
        ready.settings.caller_ids.push(E164::parse("+14155550100", None).unwrap());
        ready.settings.calling_window = CallingWindow::default();
        let config = crate::assistant::templates()[0].config.clone();
        let assistant = Assistant::new(OrgId::new(), crate::NewAssistant::local("a", ProviderKind::Simulator, config).unwrap(), t);
        let unregistered: Vec<_> = ready.unmet_launch_checks(Some(&assistant), &[], &[], &[]).iter().map(UnmetCheck::code).collect();
        assert_eq!(unregistered, ["caller-id-not-registered"]);
        let registration = crate::CallerId {
            phone: ready.settings.caller_ids[0].clone(),
            org_id: ready.org_id,
            vapi_phone_number_id: None,
            elevenlabs_phone_number_id: None,
            registered_at: t,
        };
        assert!(ready.unmet_launch_checks(Some(&assistant), &[], &[registration], &[]).is_empty());
    }

    #[test]
    fn elevenlabs_native_campaigns_say_what_it_cannot_do_per_call() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let settings = CampaignSettings {
            provider: CallProvider::Elevenlabs,
            voicemail: Voicemail { action: VoicemailAction::LeaveMessage, message: Some("Call us back.".into()) },
            max_call_seconds: 300,
            ..Default::default()
        };
        let mut c = Campaign::draft(OrgId::new(), NewCampaign::parse("c", Cap::DEFAULT, settings).unwrap(), t);
        let mut config = crate::assistant::templates()[0].config.clone();
        config.max_duration_seconds = Some(600);
        let mut assistant = Assistant::new(OrgId::new(), crate::NewAssistant::local("a", ProviderKind::Elevenlabs, config).unwrap(), t);
        let cannot: Vec<_> =
            c.unmet_launch_checks(Some(&assistant), &[], &[], &[]).into_iter().filter(|u| u.code() == "provider-cannot").collect();
        assert_eq!(cannot.len(), 2, "{cannot:?}");
        assert!(cannot[0].message().starts_with("elevenlabs cannot leave a voicemail message"), "{}", cannot[0].message());
        assert!(cannot[1].message().contains("(config.maxDurationSeconds: 600 seconds): set it to 300"), "{}", cannot[1].message());
        c.settings.voicemail = Voicemail::default();
        assistant.config.max_duration_seconds = Some(300);
        assert!(c.unmet_launch_checks(Some(&assistant), &[], &[], &[]).iter().all(|u| u.code() != "provider-cannot"));
        // the other providers take both per call
        c.settings.provider = CallProvider::Vapi;
        c.settings.voicemail.action = VoicemailAction::LeaveMessage;
        assistant.config.max_duration_seconds = None;
        assert!(c.unmet_launch_checks(Some(&assistant), &[], &[], &[]).iter().all(|u| u.code() != "provider-cannot"));
    }

    fn ended(call: &Call, reason: EndReason, at: DateTime<Utc>) -> Call {
        let mut call = call.clone();
        call.absorb(&crate::CallEvent { dedupe_key: "end".into(), occurred_at: at, kind: crate::CallEventKind::Ended { reason } });
        call
    }

    #[test]
    fn a_canceled_campaign_retries_nothing() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut c = Campaign::draft(OrgId::new(), NewCampaign::parse("c", Cap::DEFAULT, CampaignSettings::default()).unwrap(), t);
        let contact = Contact::ready(
            c.id,
            crate::NewContact::new(E164::parse("+14155550100", None).unwrap(), chrono_tz::UTC, crate::Consent::on_file(chrono::Utc::now())),
            t,
        );
        let mut placed = Call::queued(c.org_id, c.id, contact.id, 1, contact.phone.clone(), t);
        placed.provider_call_id = Some("CA1".into());
        let busy = ended(&placed, EndReason::Busy, t);
        assert!(matches!(c.fate_after_call(&busy, &contact), Some(ContactFate::Retry { .. })));
        c.status = CampaignStatus::Canceled;
        assert_eq!(c.fate_after_call(&busy, &contact), Some(ContactFate::Done(ContactDisposition::Canceled)));
    }

    #[test]
    fn a_withdrawn_call_gives_its_attempt_back() {
        let ny = chrono_tz::America::New_York;
        // Wednesday 13 January 2027, 20:59 in Miami: Florida's calls end at 20:00
        let t = chrono::TimeZone::with_ymd_and_hms(&ny, 2027, 1, 13, 20, 59, 0).unwrap().with_timezone(&Utc);
        let c = Campaign::draft(OrgId::new(), NewCampaign::parse("c", Cap::DEFAULT, CampaignSettings::default()).unwrap(), t);
        let mut contact = Contact::ready(
            c.id,
            crate::NewContact::new(E164::parse("+13055550100", None).unwrap(), ny, crate::Consent::on_file(chrono::Utc::now())),
            t,
        );
        contact.attempts = 1;
        let queued = Call::queued(c.org_id, c.id, contact.id, 1, contact.phone.clone(), t);
        let outside = ended(&queued, EndReason::OutsideWindow, t);
        assert!(outside.was_withdrawn());
        let next_morning = chrono::TimeZone::with_ymd_and_hms(&ny, 2027, 1, 14, 8, 0, 0).unwrap().with_timezone(&Utc);
        assert_eq!(c.fate_after_call(&outside, &contact), Some(ContactFate::Requeue { due_at: next_morning }));
        contact.settle_call(&outside, ContactFate::Requeue { due_at: next_morning });
        assert_eq!((contact.attempts, contact.due_at), (0, next_morning), "the attempt is not spent");
        let stopped = ended(&queued, EndReason::Canceled, t);
        assert_eq!(c.fate_after_call(&stopped, &contact), Some(ContactFate::Requeue { due_at: t }));
        let listed = ended(&queued, EndReason::DoNotCall, t);
        assert_eq!(c.fate_after_call(&listed, &contact), Some(ContactFate::Done(ContactDisposition::DoNotCall)));
        let mut placed = queued.clone();
        placed.provider_call_id = Some("CA1".into());
        let canceled_at_provider = ended(&placed, EndReason::Canceled, t);
        assert!(!canceled_at_provider.was_withdrawn());
        assert_eq!(c.fate_after_call(&canceled_at_provider, &contact), Some(ContactFate::Done(ContactDisposition::Canceled)));
    }
}
