//! Campaigns: a list of contacts dialed under a cap, a calling window and a retry policy.

use crate::{AssistantId, CallingWindow, CampaignId, Cap, OrgId, ParseError, RetryPolicy};
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

/// How a campaign dials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignSettings {
    #[serde(default)]
    pub calling_window: CallingWindow,
    /// Time zone of contacts whose own zone is unknown.
    #[schema(value_type = String, example = "America/New_York")]
    pub timezone: Tz,
    #[serde(default)]
    pub retry_policy: RetryPolicy,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        Self { calling_window: CallingWindow::default(), timezone: Tz::America__New_York, retry_policy: RetryPolicy::default() }
    }
}

/// A campaign as it is created.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCampaign {
    pub name: String,
    pub cap: Cap,
    pub settings: CampaignSettings,
    pub assistant_id: Option<AssistantId>,
}

impl NewCampaign {
    pub const MAX_NAME_CHARS: usize = 200;

    pub fn parse(name: &str, cap: Cap, settings: CampaignSettings) -> Result<Self, ParseError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > Self::MAX_NAME_CHARS {
            return Err(ParseError::new("name", format!("must be 1–{} characters", Self::MAX_NAME_CHARS)));
        }
        Ok(Self { name: name.to_string(), cap, settings, assistant_id: None })
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
    pub settings: CampaignSettings,
    /// The assistant that speaks on the campaign's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<AssistantId>,
    pub counters: CampaignCounters,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Campaign {
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
            created_at: now,
            started_at: None,
            completed_at: None,
        }
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

    /// Slots free under the cap right now.
    pub fn free_slots(&self) -> u32 {
        self.cap.get().saturating_sub(self.counters.active_calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
