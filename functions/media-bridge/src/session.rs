//! One call's bridge: Twilio's media stream on one side, the ElevenLabs conversation on the
//! other. One task reads both sockets (`select!`; whichever ends first ends the call), a writer
//! task per socket drains its bounded outbox, tool calls run beside them, and the transcript is
//! saved by its own task in batches. No lock is held across an `.await`.

use crate::{
    Bridge, Phase,
    live::LiveEvent,
    outbox::{Outbox, Outgoing},
    tools,
    wire::{self, FromAgent, FromTwilio},
};
use axum::extract::ws::{Message, WebSocket};
use chrono::Utc;
use domain::{Assistant, CallDetails, CallEvent, CallEventKind, CallId, CampaignId, Contact, ContactId, OrgId, Transcript};
use futures::{Sink, SinkExt, StreamExt, stream::SplitStream};
use std::{sync::Arc, time::Instant};
use store::Store;
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};
use tracing::Instrument;

type AgentSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Who the call is, from the stream's `start` and the store.
pub struct CallContext {
    pub org: OrgId,
    pub campaign_id: CampaignId,
    pub call_id: CallId,
    pub call_sid: String,
    pub stream_sid: String,
    pub contact: Contact,
    pub assistant: Assistant,
    /// The tool calls the agent may still make on this call.
    pub tools: app::ToolBudget,
}

/// How the bridge's part of a call ended.
#[derive(Debug)]
enum End {
    /// Twilio sent `stop` or closed the socket: the caller hung up (or the call was ended).
    CallerSide(String),
    /// The agent's side could not be opened, failed or closed: the call is hung up.
    AgentSide(String),
    /// The bridge shut down before the call ended.
    Closed,
}

pub(crate) async fn bridge_call<S: Store>(bridge: Arc<Bridge<S>>, socket: WebSocket) {
    let (twilio_sink, mut twilio) = socket.split();
    let twilio_out = Arc::new(Outbox::new(bridge.settings.audio_queue_frames));
    let writer =
        tokio::spawn(write_all(twilio_out.clone(), twilio_sink, bridge.clone(), |text| Message::Text(text.into()), Message::Close(None)));
    let call = match tokio::time::timeout(bridge.settings.start_timeout, stream_start(&mut twilio)).await {
        Ok(Some(start)) => match Box::pin(load_call(&bridge, start)).await {
            Ok(call) => Arc::new(call),
            Err(why) => {
                tracing::warn!(%why, "media stream refused");
                return finish_writer(&twilio_out, writer).await;
            }
        },
        Ok(None) => return finish_writer(&twilio_out, writer).await,
        Err(_) => {
            tracing::warn!("media stream without a start message: closed");
            return finish_writer(&twilio_out, writer).await;
        }
    };
    let span = tracing::info_span!("bridge_call", stream = %call.stream_sid);
    async {
        bridge.metrics.active_calls.inc();
        let feed = bridge.live.open(call.org, call.call_id);
        let _ = feed.send(LiveEvent::Status { call_id: call.call_id, state: "inProgress".into() });
        tracing::info!("media stream started");

        // the one-off steps are boxed: a call's task then keeps only the conversation's state for
        // its whole length, not room for the largest step (the TLS connect)
        let end = match Box::pin(open_conversation(&bridge, &call)).await {
            Ok(agent) => converse(&bridge, &call, &mut twilio, &twilio_out, agent, &feed).await,
            Err(why) => End::AgentSide(why),
        };
        finish_writer(&twilio_out, writer).await;
        if let End::AgentSide(why) = &end {
            // without its agent the call is dead air: end it at Twilio too
            if let Err(e) = Box::pin(bridge.calls.hang_up(domain::CallProvider::Twilio, &call.call_sid)).await {
                tracing::error!(error = %e, "the call could not be hung up after the agent's side failed");
            }
            tracing::error!(%why, "the agent's side failed: call hung up");
        }
        Box::pin(record_end(&bridge, &call, &end)).await;
        let reason = match &end {
            End::CallerSide(why) | End::AgentSide(why) => why.clone(),
            End::Closed => "the bridge shut down".into(),
        };
        let _ = feed.send(LiveEvent::Ended { call_id: call.call_id, reason });
        bridge.live.close(call.call_id);
        bridge.metrics.active_calls.dec();
    }
    .instrument(span)
    .await;
}

/// `CA` and 32 lowercase or uppercase hex digits.
fn is_call_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("CA") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads up to Twilio's `start`; None when the socket ends first.
async fn stream_start(twilio: &mut SplitStream<WebSocket>) -> Option<wire::StreamStart> {
    while let Some(Ok(message)) = twilio.next().await {
        match message {
            Message::Text(text) => match FromTwilio::parse(&text) {
                Ok(FromTwilio::Start(start)) => return Some(start),
                Ok(FromTwilio::Stop) => return None,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "unreadable frame before the stream's start"),
            },
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

/// The call a stream's `start` names, once everything in it is shown to be ours: the per-call
/// token we signed into the TwiML, a well-formed CallSid matching the call's, a live Twilio call
/// of that organisation, and no other stream for it. Nothing is written before all of that holds.
async fn load_call<S: Store>(bridge: &Bridge<S>, start: wire::StreamStart) -> Result<CallContext, String> {
    if !is_call_sid(&start.call_sid) {
        return Err(format!("{:?} is not a Twilio CallSid (CA and 32 hex digits)", start.call_sid));
    }
    let parameter = |name: &str| start.custom_parameters.get(name).ok_or_else(|| format!("the stream's start has no {name} parameter"));
    let org: OrgId = parameter("orgId")?.parse().map_err(|_| "orgId is not an organisation id".to_string())?;
    let call_id: CallId = parameter("callId")?.parse().map_err(|_| "callId is not a call id".to_string())?;
    match &bridge.settings.twilio_auth_token {
        Some(secret) => {
            let token = start.custom_parameters.get("token").map(String::as_str);
            providers::signatures::verify_stream_token(secret.expose(), token, call_id, org, Utc::now()).map_err(|e| e.to_string())?;
        }
        // only reachable with OUTDIAL_BRIDGE_VERIFY_SIGNATURE=false, which the bridge warns about at start
        None => tracing::warn!("stream token not checked: TWILIO_AUTH_TOKEN is not set"),
    }
    let call = bridge.store.get_call(org, call_id).await.map_err(|e| format!("call {call_id}: {e}"))?;
    if call.state.is_terminal() {
        return Err(format!("call {call_id} has ended"));
    }
    // the ids ride in TwiML we wrote; the CallSid is Twilio's own, so the two must agree
    if call.provider_call_id.as_deref().is_some_and(|sid| sid != start.call_sid) {
        return Err(format!("call {call_id} belongs to another Twilio call than {}", start.call_sid));
    }
    let contact_id: ContactId = parameter("contactId")?.parse().map_err(|_| "contactId is not a contact id".to_string())?;
    let campaign_id: CampaignId = parameter("campaignId")?.parse().map_err(|_| "campaignId is not a campaign id".to_string())?;
    if (contact_id, campaign_id) != (call.contact_id, call.campaign_id) {
        return Err(format!("contact {contact_id} of campaign {campaign_id} is not call {call_id}'s"));
    }
    let campaign = bridge.store.get_campaign(org, call.campaign_id).await.map_err(|e| e.to_string())?;
    if campaign.settings.provider != domain::CallProvider::Twilio {
        return Err(format!("call {call_id} is a {} call, not one Twilio streams to this bridge", campaign.settings.provider.as_str()));
    }
    let contact = bridge.store.get_contact(org, call.campaign_id, call.contact_id).await.map_err(|e| e.to_string())?;
    let assistant_id = campaign.assistant_id.ok_or_else(|| format!("campaign {} has no assistant", campaign.id))?;
    let assistant = bridge.store.get_assistant(org, assistant_id).await.map_err(|e| e.to_string())?;
    // one stream per call, across every bridge: the first to log it has it
    let now = Utc::now();
    let text = format!("media stream {} started", start.stream_sid);
    let streamed = CallEvent { dedupe_key: "bridge:stream".into(), occurred_at: now, kind: CallEventKind::Note { text } };
    let applied = bridge.store.apply_call_event(org, call_id, streamed, now).await.map_err(|e| e.to_string())?;
    if applied.duplicate {
        return Err(format!("call {call_id} already has a media stream"));
    }
    Ok(CallContext {
        org,
        campaign_id: call.campaign_id,
        call_id,
        call_sid: start.call_sid,
        stream_sid: start.stream_sid,
        contact,
        assistant,
        tools: app::ToolBudget::default(),
    })
}

/// Signed URL, socket, first message; an error says what to fix.
async fn open_conversation<S: Store>(bridge: &Bridge<S>, call: &CallContext) -> Result<AgentSocket, String> {
    let agents = bridge.agents.as_ref().ok_or("ElevenLabs is not configured: set ELEVENLABS_API_KEY")?;
    if call.assistant.provider != domain::ProviderKind::Elevenlabs {
        return Err(format!(
            "assistant {} runs on {}, not ElevenLabs: the bridge talks to ElevenLabs agents",
            call.assistant.id,
            call.assistant.provider.as_str()
        ));
    }
    let agent_id = call
        .assistant
        .provider_assistant_id
        .as_deref()
        .ok_or_else(|| format!("assistant {} has no ElevenLabs agent yet", call.assistant.id))?;
    let started = Instant::now();
    let url = agents.signed_url(agent_id).await.map_err(|e| format!("no signed URL for agent {agent_id}: {e}"))?;
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(0);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
        .await
        .map_err(|e| format!("the ElevenLabs conversation could not be opened: {e}"))?;
    bridge.metrics.agent_connect_seconds.observe(started.elapsed().as_secs_f64());
    Ok(socket)
}

async fn converse<S: Store>(
    bridge: &Arc<Bridge<S>>,
    call: &Arc<CallContext>,
    twilio: &mut SplitStream<WebSocket>,
    twilio_out: &Outbox,
    agent: AgentSocket,
    feed: &tokio::sync::broadcast::Sender<LiveEvent>,
) -> End {
    let (agent_sink, mut agent_in) = agent.split();
    let agent_out = Arc::new(Outbox::new(bridge.settings.audio_queue_frames));
    let agent_writer = tokio::spawn(write_all(
        agent_out.clone(),
        agent_sink,
        bridge.clone(),
        |text| tungstenite::Message::Text(text.into()),
        tungstenite::Message::Close(None),
    ));
    let mut variables = call.contact.dynamic_variables();
    variables.extend(domain::id_variables(call.org, call.campaign_id, call.call_id, call.contact.id));
    let overrides = (call.assistant.source != domain::AssistantSource::Imported).then_some(&call.assistant.config);
    agent_out.push_control(wire::agent_initiation(&variables, overrides));

    let (transcript_tx, transcript_rx) = watch::channel(Transcript::default());
    let saver =
        tokio::spawn(save_transcript(bridge.clone(), call.org, call.call_id, call.contact.phone.clone(), transcript_rx).in_current_span());
    let (tool_results, mut tool_answers) = mpsc::channel::<String>(16);
    let mut tool_runs = JoinSet::new();
    let mut phase = bridge.phase();
    let metrics = &bridge.metrics;
    let mut responses = 0u64;
    // the agent's first audio on its way to the callee: the connect time abandonment is measured by
    let mut connected = false;
    let sid = call.stream_sid.as_str();

    let end = loop {
        tokio::select! {
            frame = twilio.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    metrics.frames_in.inc();
                    match FromTwilio::parse(&text) {
                        Ok(FromTwilio::Media(media)) => {
                            let dropped = agent_out.push_audio(wire::agent_audio(&media.payload), None);
                            metrics.dropped_frames.inc_by(dropped as u64);
                        }
                        Ok(FromTwilio::Dtmf(dtmf)) => {
                            agent_out.push_control(wire::agent_contextual_update(&format!("The caller pressed {} on the keypad.", dtmf.digit)));
                        }
                        Ok(FromTwilio::Mark(mark)) => tracing::debug!(mark = %mark.name, "played up to mark"),
                        Ok(FromTwilio::Stop) => break End::CallerSide("Twilio stopped the media stream".into()),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "unreadable Twilio frame skipped"),
                    }
                }
                Some(Ok(Message::Close(_))) | None => break End::CallerSide("Twilio closed the media stream".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => break End::CallerSide(format!("the media stream failed: {e}")),
            },
            message = agent_in.next() => match message {
                Some(Ok(tungstenite::Message::Text(text))) => {
                    metrics.frames_in.inc();
                    match FromAgent::parse(&text) {
                        Ok(FromAgent::Audio(audio_event)) => {
                            let dropped = twilio_out.push_audio(wire::twilio_media(sid, &audio_event.audio_base_64), audio_event.event_id);
                            metrics.dropped_frames.inc_by(dropped as u64);
                            if !connected {
                                connected = true;
                                tokio::spawn(record_connected(bridge.clone(), call.org, call.call_id).in_current_span());
                            }
                        }
                        Ok(FromAgent::Ping(ping_event)) => agent_out.push_urgent(wire::agent_pong(ping_event.event_id)),
                        Ok(FromAgent::Interruption(interruption_event)) => {
                            twilio_out.interrupt(interruption_event.event_id, wire::twilio_clear(sid));
                        }
                        Ok(FromAgent::AgentResponse(agent_response_event)) => {
                            responses += 1;
                            twilio_out.push_control(wire::twilio_mark(sid, &format!("response-{responses}")));
                            heard(&transcript_tx, feed, call.call_id, "agent", agent_response_event.agent_response);
                        }
                        Ok(FromAgent::UserTranscript(user_transcription_event)) => {
                            heard(&transcript_tx, feed, call.call_id, "user", user_transcription_event.user_transcript);
                        }
                        Ok(FromAgent::ClientToolCall(client_tool_call)) => {
                            let (bridge, results, call) = (bridge.clone(), tool_results.clone(), call.clone());
                            tool_runs.spawn(async move {
                                let answer = tools::run(&bridge, &call, &client_tool_call.tool_name, &client_tool_call.parameters).await;
                                let (text, is_error) = match &answer {
                                    Ok(t) => (t.as_str(), false),
                                    Err(e) => (e.as_str(), true),
                                };
                                let _ = results.send(wire::agent_tool_result(&client_tool_call.tool_call_id, text, is_error)).await;
                            }.in_current_span());
                        }
                        Ok(FromAgent::ConversationInitiationMetadata(m)) => {
                            let formats = [m.agent_output_audio_format.as_deref(), m.user_input_audio_format.as_deref()];
                            if let Some(other) = formats.into_iter().flatten().find(|f| *f != providers::elevenlabs::TWILIO_AUDIO_FORMAT) {
                                break End::AgentSide(format!("the agent's audio format is {other}, and the bridge carries {} only: set the agent's input and output formats to it", providers::elevenlabs::TWILIO_AUDIO_FORMAT));
                            }
                        }
                        Ok(FromAgent::Other) => {}
                        Err(e) => tracing::warn!(error = %e, "unreadable ElevenLabs message skipped"),
                    }
                }
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                    break End::AgentSide(format!("ElevenLabs closed the conversation {why}").trim_end().to_string());
                }
                None => break End::AgentSide("the ElevenLabs socket ended".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => break End::AgentSide(format!("the ElevenLabs socket failed: {e}")),
            },
            Some(answer) = tool_answers.recv() => agent_out.push_control(answer),
            Ok(()) = phase.changed() => if *phase.borrow() == Phase::Closing { break End::Closed },
        }
    };
    tool_runs.abort_all();
    finish_writer(&agent_out, agent_writer).await;
    drop(transcript_tx);
    if saver.await.is_err() {
        tracing::error!("the transcript's last batch was not saved");
    }
    end
}

/// Records when the agent's first audio went to the callee (once per call, whoever retries).
async fn record_connected<S: Store>(bridge: Arc<Bridge<S>>, org: OrgId, call_id: CallId) {
    let now = Utc::now();
    let details = CallDetails { connected_at: Some(now), ..Default::default() };
    let event = CallEvent {
        dedupe_key: format!("bridge:{call_id}:connected"),
        occurred_at: now,
        kind: CallEventKind::Details { details: Box::new(details) },
    };
    if let Err(e) = bridge.store.apply_call_event(org, call_id, event, now).await {
        tracing::warn!(error = %e, "the agent's connect time was not recorded");
    }
}

fn heard(
    transcript: &watch::Sender<Transcript>,
    feed: &tokio::sync::broadcast::Sender<LiveEvent>,
    call_id: CallId,
    speaker: &'static str,
    text: String,
) {
    transcript.send_modify(|t| t.push(speaker, &text));
    let _ = feed.send(LiveEvent::Transcript { call_id, speaker, text });
}

/// Saves what was said at most once per interval, and the rest when the call ends. Each save
/// appends only the lines since the last one (a chunk; the call record is not rewritten); the
/// whole transcript goes on the call once, at the end. An opt-out is recorded as soon as it is heard.
async fn save_transcript<S: Store>(
    bridge: Arc<Bridge<S>>,
    org: OrgId,
    call_id: CallId,
    phone: domain::E164,
    mut lines: watch::Receiver<Transcript>,
) {
    let mut saved = 0;
    let mut listed = false;
    loop {
        let open = lines.changed().await.is_ok();
        let transcript = lines.borrow_and_update().clone();
        let now = Utc::now();
        if transcript.lines() > saved {
            let chunk = transcript.since(saved).to_string();
            match bridge.store.append_transcript(org, call_id, saved as u32, chunk).await {
                Ok(()) => saved = transcript.lines(),
                Err(e) => tracing::error!(error = %e, "transcript lines not saved; the next save carries them"),
            }
        }
        if transcript.opted_out() && !listed {
            let details = CallDetails { opted_out: true, ..Default::default() };
            let heard = CallEvent {
                dedupe_key: format!("bridge:{call_id}:opted-out"),
                occurred_at: now,
                kind: CallEventKind::Details { details: Box::new(details) },
            };
            let recorded = bridge.store.apply_call_event(org, call_id, heard, now).await;
            listed = recorded.is_ok() && bridge.store.add_do_not_call(org, vec![phone.clone()], now).await.is_ok();
            tracing::info!(phone = %domain::mask_phone(phone.as_str()), "callee opted out: number on the do-not-call list");
        }
        if !open {
            if let Some(text) = transcript.text() {
                let details = CallDetails { transcript: Some(text.to_string()), opted_out: transcript.opted_out(), ..Default::default() };
                let whole = CallEvent {
                    dedupe_key: format!("bridge:{call_id}:transcript"),
                    occurred_at: now,
                    kind: CallEventKind::Details { details: Box::new(details) },
                };
                if let Err(e) = bridge.store.apply_call_event(org, call_id, whole, now).await {
                    tracing::error!(error = %e, "the whole transcript was not put on the call; its lines are kept in chunks");
                }
            }
            return;
        }
        tokio::time::sleep(bridge.settings.transcript_interval).await;
    }
}

/// The bridge's own account of the end, in the call's event log.
async fn record_end<S: Store>(bridge: &Bridge<S>, call: &CallContext, end: &End) {
    let now = Utc::now();
    let (text, error) = match end {
        End::CallerSide(why) => (format!("media stream ended: {why}"), None),
        End::AgentSide(why) => (format!("media stream ended by the bridge: {why}"), Some(why.clone())),
        End::Closed => {
            ("media stream closed: the bridge shut down".to_string(), Some("the media bridge shut down during the call".to_string()))
        }
    };
    let mut events =
        vec![CallEvent { dedupe_key: format!("bridge:{}:end", call.call_id), occurred_at: now, kind: CallEventKind::Note { text } }];
    if let Some(error) = error {
        let details = CallDetails { error: Some(error), ..Default::default() };
        events.push(CallEvent {
            dedupe_key: format!("bridge:{}:error", call.call_id),
            occurred_at: now,
            kind: CallEventKind::Details { details: Box::new(details) },
        });
    }
    for event in events {
        if let Err(e) = bridge.store.apply_call_event(call.org, call.call_id, event, now).await {
            tracing::error!(error = %e, "the end of the media stream was not recorded");
        }
    }
}

/// Writes what the outbox holds, batched (one flush per batch), until it is told to close.
async fn write_all<S, K, M>(outbox: Arc<Outbox>, mut sink: K, bridge: Arc<Bridge<S>>, text: fn(String) -> M, close: M)
where
    K: Sink<M> + Unpin,
    K::Error: std::fmt::Display,
{
    // both buffers live as long as the writer: no allocation per frame
    let (mut batch, mut audio_since) = (Vec::new(), Vec::new());
    loop {
        outbox.take(&mut batch).await;
        let mut closing = false;
        for item in batch.drain(..) {
            let message = match item {
                Outgoing::Audio { text: t, queued_at, .. } => {
                    audio_since.push(queued_at);
                    text(t)
                }
                Outgoing::Control { text: t } => text(t),
                Outgoing::Close => {
                    closing = true;
                    break;
                }
            };
            if let Err(e) = sink.feed(message).await {
                tracing::debug!(error = %e, "peer socket gone: writer stops");
                return;
            }
            bridge.metrics.frames_out.inc();
        }
        if let Err(e) = sink.flush().await {
            tracing::debug!(error = %e, "peer socket gone: writer stops");
            return;
        }
        for queued_at in audio_since.drain(..) {
            bridge.metrics.forwarding_seconds.observe(queued_at.elapsed().as_secs_f64());
        }
        if closing {
            let _ = sink.send(close).await;
            let _ = sink.close().await;
            return;
        }
    }
}

/// Closes the socket after what is queued, giving a slow peer a moment before letting go.
async fn finish_writer(outbox: &Outbox, writer: tokio::task::JoinHandle<()>) {
    outbox.close();
    let abort = writer.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(2), writer).await.is_err() {
        abort.abort();
    }
}
