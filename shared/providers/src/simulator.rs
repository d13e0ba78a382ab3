//! The simulated provider: assistants kept in memory, and calls whose lives are drawn from
//! configurable odds and reported back through the real webhook routes, for the demo and tests.

use crate::{AssistantProvider, CallRequest, ProviderAssistant, ProviderError};
use domain::{AssistantConfig, ProviderKind};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Clone, Debug, Default)]
pub struct SimulatedAssistants {
    assistants: Arc<Mutex<HashMap<String, ProviderAssistant>>>,
}

impl SimulatedAssistants {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, ProviderAssistant>) -> T) -> T {
        // a poisoned map only means a panicking test thread; its data is still whole
        f(&mut self.assistants.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl AssistantProvider for SimulatedAssistants {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Simulator
    }

    async fn create_assistant(&self, name: &str, config: &AssistantConfig, _tools: &crate::AgentToolset) -> Result<String, ProviderError> {
        let id = format!("sim_asst_{}", uuid::Uuid::now_v7().simple());
        let assistant = ProviderAssistant { id: id.clone(), name: name.into(), config: config.clone() };
        self.with(|m| m.insert(id.clone(), assistant));
        Ok(id)
    }

    async fn get_assistant(&self, id: &str) -> Result<ProviderAssistant, ProviderError> {
        self.with(|m| m.get(id).cloned()).ok_or_else(|| ProviderError::NotFound { provider: "simulator", id: id.into() })
    }

    async fn update_assistant(
        &self,
        id: &str,
        name: &str,
        config: &AssistantConfig,
        _tools: &crate::AgentToolset,
    ) -> Result<(), ProviderError> {
        self.with(|m| match m.get_mut(id) {
            Some(a) => {
                a.name = name.into();
                a.config = config.clone();
                Ok(())
            }
            None => Err(ProviderError::NotFound { provider: "simulator", id: id.into() }),
        })
    }
}

/// How simulated calls turn out: probabilities (0–1) and durations in simulated seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimulatorOdds {
    pub busy: f64,
    pub no_answer: f64,
    pub failed: f64,
    /// Of the answered calls, those a machine picks up.
    pub machine: f64,
    /// Of the calls a person answers, those where they ask not to be called again.
    pub opt_out: f64,
    pub ring_seconds: (u32, u32),
    pub talk_seconds: (u32, u32),
}

impl Default for SimulatorOdds {
    fn default() -> Self {
        Self { busy: 0.08, no_answer: 0.2, failed: 0.02, machine: 0.25, opt_out: 0.04, ring_seconds: (3, 25), talk_seconds: (20, 180) }
    }
}

/// One simulated call's life, drawn when it is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimulatedOutcome {
    Busy,
    NoAnswer,
    Failed,
    Machine { talk_seconds: u32 },
    Human { talk_seconds: u32, opts_out: bool },
}

/// Where the simulator reports, and the secrets it signs with (as Twilio and ElevenLabs would).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatorWebhooks {
    /// Our webhooks' public base URL (`OUTDIAL_PUBLIC_URL`).
    pub public_url: String,
    pub twilio_account_sid: String,
    pub twilio_auth_token: crate::Secret,
    /// Signs the post-call transcript; without it no transcript is sent.
    pub elevenlabs_webhook_secret: Option<crate::Secret>,
}

/// The simulated call provider: each call's life is drawn from `odds` with a seeded generator
/// and reported, in real time divided by `time_scale`, to the real webhook routes with valid
/// Twilio status and AMD callbacks (and an ElevenLabs post-call transcript for conversations).
#[derive(Clone)]
pub struct SimulatedCalls {
    client: reqwest::Client,
    webhooks: SimulatorWebhooks,
    odds: SimulatorOdds,
    time_scale: f64,
    seed: u64,
    /// Calls placed so far per number: a number's nth call draws the same life on every run.
    attempts: Arc<Mutex<HashMap<String, u64>>>,
    /// Live calls that can still be hung up.
    live: Arc<Mutex<HashMap<String, Arc<tokio::sync::Notify>>>>,
    /// Our call id → the simulated CallSid, as a provider's call list would tell.
    placed: Arc<Mutex<HashMap<domain::CallId, String>>>,
}

impl std::fmt::Debug for SimulatedCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedCalls").field("public_url", &self.webhooks.public_url).field("odds", &self.odds).finish()
    }
}

impl SimulatedCalls {
    pub fn new(webhooks: SimulatorWebhooks, odds: SimulatorOdds, seed: u64, time_scale: f64) -> Self {
        Self {
            client: reqwest::Client::new(),
            webhooks,
            odds,
            time_scale: time_scale.max(f64::MIN_POSITIVE),
            seed,
            attempts: Arc::default(),
            live: Arc::default(),
            placed: Arc::default(),
        }
    }

    /// Draws a call's ringing time and its outcome from the seed, the number and how many
    /// times it was called before, so a run is repeatable whatever order calls are placed in.
    fn draw(&self, to: &str) -> (u32, SimulatedOutcome) {
        use rand::{Rng, SeedableRng};
        use sha2::Digest;
        let nth = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let n = attempts.entry(to.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let digest = sha2::Sha256::new().chain_update(self.seed.to_be_bytes()).chain_update(nth.to_be_bytes()).chain_update(to).finalize();
        let mut rng = rand::rngs::StdRng::from_seed(digest.into());
        // drawn all the same, so a seed's calls live the same lives as before sids were unique
        let _ = rng.random::<u128>();
        let o = self.odds;
        let ring = rng.random_range(o.ring_seconds.0..=o.ring_seconds.1.max(o.ring_seconds.0));
        let talk = rng.random_range(o.talk_seconds.0..=o.talk_seconds.1.max(o.talk_seconds.0));
        let roll: f64 = rng.random();
        let outcome = if roll < o.busy {
            SimulatedOutcome::Busy
        } else if roll < o.busy + o.no_answer {
            SimulatedOutcome::NoAnswer
        } else if roll < o.busy + o.no_answer + o.failed {
            SimulatedOutcome::Failed
        } else if rng.random::<f64>() < o.machine {
            SimulatedOutcome::Machine { talk_seconds: talk.min(30) }
        } else {
            SimulatedOutcome::Human { talk_seconds: talk, opts_out: rng.random::<f64>() < o.opt_out }
        };
        (ring, outcome)
    }

    async fn pause(&self, simulated_seconds: u32) {
        tokio::time::sleep(self.real(simulated_seconds)).await;
    }

    fn real(&self, simulated_seconds: u32) -> std::time::Duration {
        std::time::Duration::from_secs_f64(f64::from(simulated_seconds) / self.time_scale)
    }

    /// Ends a live simulated call now, as Twilio's hang-up does; false when it is not live.
    pub fn hang_up(&self, call_sid: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).get(call_sid).cloned();
        live.map(|hang_up| hang_up.notify_one()).is_some()
    }

    /// Posts a form as Twilio does: to the exact URL it signs.
    /// Posts a signed Twilio callback to our `path`, with the `?callId=` our callback URLs carry.
    async fn post_twilio(&self, path: &str, call: &CallRequest, fields: Vec<(&'static str, String)>) {
        let url = format!("{}{path}?callId={}", self.webhooks.public_url.trim_end_matches('/'), call.call_id);
        let signature =
            crate::twilio::signature(self.webhooks.twilio_auth_token.expose(), &url, fields.iter().map(|(k, v)| (*k, v.as_str())));
        let sent = self.client.post(&url).header("X-Twilio-Signature", signature).form(&fields).send().await;
        if let Err(e) = sent.and_then(|r| r.error_for_status()) {
            tracing::warn!(path, error = %e, "the simulator's callback was not accepted");
        }
    }

    async fn post_transcript(&self, call: &CallRequest, sid: &str, talk_seconds: u32, opts_out: bool) {
        let Some(secret) = &self.webhooks.elevenlabs_webhook_secret else { return };
        let mut transcript = vec![
            serde_json::json!({ "role": "agent", "message": "Hi, this is the assistant calling about your account.", "time_in_call_secs": 0 }),
            serde_json::json!({ "role": "user", "message": "Sure, go ahead.", "time_in_call_secs": 4 }),
        ];
        if opts_out {
            transcript.push(serde_json::json!({ "role": "user", "message": "Please don't call me again.", "time_in_call_secs": 9 }));
        }
        let now = chrono::Utc::now();
        let body = serde_json::json!({
            "type": "post_call_transcription",
            "event_timestamp": now.timestamp(),
            "data": {
                "agent_id": call.assistant_provider_id.clone().unwrap_or_default(),
                "conversation_id": format!("conv_{}", &sid[2..]),
                "status": "done",
                "transcript": transcript,
                // ElevenLabs reports a conversation's cost in credits: here SIMULATED_CREDITS_PER_MINUTE
                "metadata": {
                    "call_duration_secs": talk_seconds,
                    "cost": (u64::from(talk_seconds) * SIMULATED_CREDITS_PER_MINUTE).div_ceil(60),
                    "phone_call": { "call_sid": sid },
                },
                "analysis": { "call_successful": if opts_out { "failure" } else { "success" }, "transcript_summary": "A simulated conversation." },
                "conversation_initiation_client_data": { "dynamic_variables": call.variables_with_ids() },
            },
        })
        .to_string();
        let header = crate::elevenlabs::webhook_signature(secret.expose(), body.as_bytes(), now);
        let url = format!("{}/webhooks/elevenlabs", self.webhooks.public_url.trim_end_matches('/'));
        let sent =
            self.client.post(url).header("ElevenLabs-Signature", header).header("Content-Type", "application/json").body(body).send().await;
        if let Err(e) = sent.and_then(|r| r.error_for_status()) {
            tracing::warn!(error = %e, "the simulator's transcript was not accepted");
        }
    }

    async fn live(self, call: CallRequest, sid: String, ring: u32, outcome: SimulatedOutcome) {
        let mut sequence = 0u32;
        let status = |status: &str, sequence: u32, duration: Option<u32>| {
            let mut fields = vec![
                ("CallSid", sid.clone()),
                ("AccountSid", self.webhooks.twilio_account_sid.clone()),
                ("From", call.from.as_str().to_string()),
                ("To", call.to.as_str().to_string()),
                ("CallStatus", status.to_string()),
                ("Direction", "outbound-api".to_string()),
                ("ApiVersion", "2010-04-01".to_string()),
                ("Timestamp", chrono::Utc::now().to_rfc2822()),
                ("CallbackSource", "call-progress-events".to_string()),
                ("SequenceNumber", sequence.to_string()),
            ];
            if let Some(d) = duration {
                fields.push(("CallDuration", d.to_string()));
            }
            fields
        };
        let mut next = |s: &str, d: Option<u32>| {
            let fields = status(s, sequence, d);
            sequence += 1;
            fields
        };
        self.post_twilio("/webhooks/twilio/status", &call, next("initiated", None)).await;
        self.post_twilio("/webhooks/twilio/status", &call, next("ringing", None)).await;
        self.pause(ring).await;
        let (talk, answered_by, opts_out) = match outcome {
            SimulatedOutcome::Busy => return self.post_twilio("/webhooks/twilio/status", &call, next("busy", None)).await,
            SimulatedOutcome::NoAnswer => return self.post_twilio("/webhooks/twilio/status", &call, next("no-answer", None)).await,
            SimulatedOutcome::Failed => return self.post_twilio("/webhooks/twilio/status", &call, next("failed", None)).await,
            SimulatedOutcome::Machine { talk_seconds } => (talk_seconds, "machine_end_beep", false),
            SimulatedOutcome::Human { talk_seconds, opts_out } => (talk_seconds, "human", opts_out),
        };
        self.post_twilio("/webhooks/twilio/status", &call, next("in-progress", None)).await;
        let amd = vec![
            ("CallSid", sid.clone()),
            ("AccountSid", self.webhooks.twilio_account_sid.clone()),
            ("AnsweredBy", answered_by.to_string()),
            ("MachineDetectionDuration", "2300".to_string()),
        ];
        let hang_up = Arc::new(tokio::sync::Notify::new());
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(sid.clone(), hang_up.clone());
        let answered = tokio::time::Instant::now();
        self.post_twilio("/webhooks/twilio/amd", &call, amd).await;
        tokio::select! {
            _ = self.pause(talk) => {}
            _ = hang_up.notified() => {}
        }
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&sid);
        let talked = ((answered.elapsed().as_secs_f64() * self.time_scale).round() as u32).clamp(1, talk);
        self.post_twilio("/webhooks/twilio/status", &call, next("completed", Some(talked))).await;
        if answered_by == "human" {
            self.post_transcript(&call, &sid, talked, opts_out).await;
        }
    }
}

/// The credits a simulated conversation costs per minute, reported as ElevenLabs reports cost.
pub const SIMULATED_CREDITS_PER_MINUTE: u64 = 1_000;

/// The simulated CallSid of `call`: `CA` and its id's 32 hex digits, unique across processes
/// (unlike anything drawn from a seed they share) and the same if the call is looked up again.
fn call_sid(call: domain::CallId) -> String {
    format!("CA{}", call.to_string().replace('-', ""))
}

impl crate::CallProvider for SimulatedCalls {
    async fn place_call(&self, call: &CallRequest) -> Result<String, ProviderError> {
        let (ring, outcome) = self.draw(call.to.as_str());
        let sid = call_sid(call.call_id);
        self.placed.lock().unwrap_or_else(|p| p.into_inner()).insert(call.call_id, sid.clone());
        tokio::spawn(self.clone().live(call.clone(), sid.clone(), ring, outcome));
        Ok(sid)
    }

    async fn find_placed_call(&self, call: &CallRequest, _since: chrono::DateTime<chrono::Utc>) -> Result<Vec<String>, ProviderError> {
        Ok(self.placed.lock().unwrap_or_else(|p| p.into_inner()).get(&call.call_id).cloned().into_iter().collect())
    }
}
