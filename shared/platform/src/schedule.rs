//! The scheduler port: each running campaign has its own every-minute tick schedule, and a
//! campaign with `startAt` a one-shot schedule that starts it. EventBridge Scheduler in AWS; a
//! tokio timer feeding a channel locally.

use aws_sdk_scheduler::{
    Client,
    error::{DisplayErrorContext, SdkError},
    types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target},
};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{CampaignId, OrgId};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::mpsc, task::JoinHandle};

/// What a schedule asks of its target when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledAction {
    /// Run the campaign's tick.
    Tick,
    /// Start the campaign (its `startAt` has come).
    Start,
}

impl ScheduledAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tick => "tick",
            Self::Start => "start",
        }
    }
}

/// The payload a schedule delivers: EventBridge Scheduler sends exactly its `Input` JSON, with the
/// execution id and scheduled time filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledRun {
    pub action: ScheduledAction,
    pub org: OrgId,
    pub campaign: CampaignId,
    /// Same for every retry of one firing: what makes handling it idempotent.
    pub execution_id: String,
    pub scheduled_time: String,
}

/// A schedule of a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// `rate(1 minute)` while the campaign runs.
    Ticks,
    /// `at(…)` once, to start the campaign.
    StartAt(DateTime<Utc>),
}

impl Schedule {
    pub fn action(self) -> ScheduledAction {
        match self {
            Self::Ticks => ScheduledAction::Tick,
            Self::StartAt(_) => ScheduledAction::Start,
        }
    }
}

/// The schedule's name: one per campaign and action, so creating it twice is a conflict.
pub fn schedule_name(campaign: CampaignId, action: ScheduledAction) -> String {
    format!("outdial-{}-{campaign}", action.as_str())
}

/// A schedule as the scheduler holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleInfo {
    pub name: String,
    pub expression: String,
    /// The input template, placeholders unexpanded.
    pub input: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("schedule {0} already exists")]
    AlreadyExists(String),
    #[error("schedule {0} does not exist")]
    NotFound(String),
    #[error("the scheduler is not configured: set {0}")]
    NotConfigured(&'static str),
    #[error("the scheduler failed: {0}")]
    Backend(String),
}

/// Creates and deletes campaign schedules.
pub trait CampaignScheduler: Clone + Send + Sync + 'static {
    /// Creates the schedule; `AlreadyExists` when the campaign has it already.
    fn create(&self, org: OrgId, campaign: CampaignId, schedule: Schedule) -> impl Future<Output = Result<(), SchedulerError>> + Send;
    /// Deletes the schedule; `NotFound` when there is none.
    fn delete(&self, campaign: CampaignId, action: ScheduledAction) -> impl Future<Output = Result<(), SchedulerError>> + Send;
    fn get(
        &self,
        campaign: CampaignId,
        action: ScheduledAction,
    ) -> impl Future<Output = Result<Option<ScheduleInfo>, SchedulerError>> + Send;
}

/// The input template EventBridge Scheduler fills in at each firing.
fn input_template(org: OrgId, campaign: CampaignId, action: ScheduledAction) -> String {
    serde_json::json!({
        "action": action,
        "org": org,
        "campaign": campaign,
        "executionId": "<aws.scheduler.execution-id>",
        "scheduledTime": "<aws.scheduler.scheduled-time>",
    })
    .to_string()
}

fn expression(schedule: Schedule) -> String {
    match schedule {
        Schedule::Ticks => "rate(1 minute)".into(),
        Schedule::StartAt(at) => format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")),
    }
}

/// EventBridge Scheduler: schedules in one group, each invoking the tick function through a role.
#[derive(Clone, Debug)]
pub struct EventBridgeScheduler {
    client: Client,
    group: String,
    target_arn: String,
    role_arn: String,
}

impl EventBridgeScheduler {
    pub fn new(client: Client, group: &str, target_arn: &str, role_arn: &str) -> Self {
        Self { client, group: group.into(), target_arn: target_arn.into(), role_arn: role_arn.into() }
    }

    /// From the configuration: `CAMPAIGN_TICK_ARN` and `SCHEDULER_ROLE_ARN` are required.
    pub async fn from_config(config: &crate::config::SchedulerConfig) -> Result<Self, SchedulerError> {
        let target = config.target_arn.as_deref().ok_or(SchedulerError::NotConfigured("CAMPAIGN_TICK_ARN"))?;
        let role = config.role_arn.as_deref().ok_or(SchedulerError::NotConfigured("SCHEDULER_ROLE_ARN"))?;
        Ok(Self::new(Client::new(&crate::aws::sdk_config(config.endpoint.as_deref()).await), &config.group, target, role))
    }
}

fn backend<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> SchedulerError {
    SchedulerError::Backend(DisplayErrorContext(e).to_string())
}

fn built(e: aws_sdk_scheduler::error::BuildError) -> SchedulerError {
    SchedulerError::Backend(e.to_string())
}

impl CampaignScheduler for EventBridgeScheduler {
    async fn create(&self, org: OrgId, campaign: CampaignId, schedule: Schedule) -> Result<(), SchedulerError> {
        let action = schedule.action();
        let name = schedule_name(campaign, action);
        let target = Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(input_template(org, campaign, action))
            .build()
            .map_err(built)?;
        let window = FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(built)?;
        let mut request = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.group)
            .schedule_expression(expression(schedule))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .target(target);
        if let Schedule::StartAt(_) = schedule {
            request = request.action_after_completion(ActionAfterCompletion::Delete);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => Err(SchedulerError::AlreadyExists(name)),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete(&self, campaign: CampaignId, action: ScheduledAction) -> Result<(), SchedulerError> {
        let name = schedule_name(campaign, action);
        match self.client.delete_schedule().name(&name).group_name(&self.group).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Err(SchedulerError::NotFound(name)),
            Err(e) => Err(backend(e)),
        }
    }

    async fn get(&self, campaign: CampaignId, action: ScheduledAction) -> Result<Option<ScheduleInfo>, SchedulerError> {
        let name = schedule_name(campaign, action);
        match self.client.get_schedule().name(&name).group_name(&self.group).send().await {
            Ok(out) => Ok(Some(ScheduleInfo {
                expression: out.schedule_expression().unwrap_or_default().to_string(),
                input: out.target().and_then(|t| t.input()).unwrap_or_default().to_string(),
                name,
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }
}

/// The local timer's schedules by name, each with the task that fires it.
type Timers = HashMap<String, (ScheduleInfo, JoinHandle<()>)>;

/// The local stack's scheduler: a tokio task per schedule, sending each firing into a channel
/// that the local stack drains. Tick schedules fire every `period`, start schedules once.
#[derive(Clone, Debug)]
pub struct LocalScheduler {
    period: Duration,
    fire: mpsc::UnboundedSender<ScheduledRun>,
    schedules: Arc<Mutex<Timers>>,
}

impl LocalScheduler {
    /// The scheduler and the receiving end of its firings.
    pub fn new(period: Duration) -> (Self, mpsc::UnboundedReceiver<ScheduledRun>) {
        let (fire, fired) = mpsc::unbounded_channel();
        (Self { period, fire, schedules: Arc::default() }, fired)
    }

    fn schedules(&self) -> std::sync::MutexGuard<'_, Timers> {
        // a panic while holding the map cannot leave it half-updated: every change is one insert or remove
        self.schedules.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl CampaignScheduler for LocalScheduler {
    async fn create(&self, org: OrgId, campaign: CampaignId, schedule: Schedule) -> Result<(), SchedulerError> {
        let action = schedule.action();
        let name = schedule_name(campaign, action);
        let mut schedules = self.schedules();
        if schedules.contains_key(&name) {
            return Err(SchedulerError::AlreadyExists(name));
        }
        let (fire, period, registry, key) = (self.fire.clone(), self.period, self.schedules.clone(), name.clone());
        let run = move |at: DateTime<Utc>| ScheduledRun {
            action,
            org,
            campaign,
            execution_id: uuid::Uuid::now_v7().to_string(),
            scheduled_time: at.to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        let task = tokio::spawn(async move {
            match schedule {
                Schedule::Ticks => loop {
                    tokio::time::sleep(period).await;
                    if fire.send(run(Utc::now())).is_err() {
                        return;
                    }
                },
                Schedule::StartAt(at) => {
                    tokio::time::sleep((at - Utc::now()).to_std().unwrap_or_default()).await;
                    // like ActionAfterCompletion::Delete: a one-shot schedule is gone once it fired
                    registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
                    let _ = fire.send(run(at));
                }
            }
        });
        let info = ScheduleInfo { name: name.clone(), expression: expression(schedule), input: input_template(org, campaign, action) };
        schedules.insert(name, (info, task));
        Ok(())
    }

    async fn delete(&self, campaign: CampaignId, action: ScheduledAction) -> Result<(), SchedulerError> {
        let name = schedule_name(campaign, action);
        let (_, task) = self.schedules().remove(&name).ok_or(SchedulerError::NotFound(name))?;
        task.abort();
        Ok(())
    }

    async fn get(&self, campaign: CampaignId, action: ScheduledAction) -> Result<Option<ScheduleInfo>, SchedulerError> {
        Ok(self.schedules().get(&schedule_name(campaign, action)).map(|(info, _)| info.clone()))
    }
}
