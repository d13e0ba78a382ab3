//! The two sockets' messages, exactly as PROTOCOLS.md gives them: Twilio Media Streams (JSON text
//! frames, numeric-looking fields as strings) and ElevenLabs Conversational AI.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{borrow::Cow, collections::BTreeMap};

/// A frame Twilio sends on the media stream. Audio borrows from the frame it came in: it is
/// forwarded as the base64 text it is, without a copy on the way in.
#[derive(Debug)]
pub enum FromTwilio<'a> {
    Connected,
    Start(StreamStart),
    Media(Media<'a>),
    Dtmf(Dtmf),
    Mark(MarkName),
    Stop,
    Other,
}

/// Every Twilio frame's shape at once, so one pass reads any of them (an internally tagged enum
/// would buffer each frame into an owned tree first).
#[derive(Deserialize)]
struct TwilioFrame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    start: Option<StreamStart>,
    #[serde(borrow)]
    media: Option<Media<'a>>,
    dtmf: Option<Dtmf>,
    mark: Option<MarkName>,
}

impl<'a> FromTwilio<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        let frame: TwilioFrame<'a> = serde_json::from_str(text)?;
        Ok(match frame.event.as_ref() {
            "connected" => Self::Connected,
            "start" => Self::Start(part(frame.start, "start")?),
            "media" => Self::Media(part(frame.media, "media")?),
            "dtmf" => Self::Dtmf(part(frame.dtmf, "dtmf")?),
            "mark" => Self::Mark(part(frame.mark, "mark")?),
            "stop" => Self::Stop,
            _ => Self::Other,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStart {
    pub stream_sid: String,
    pub call_sid: String,
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Media<'a> {
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct Dtmf {
    pub digit: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct MarkName {
    pub name: String,
}

/// Audio for Twilio to play: `{"event":"media","streamSid":S,"media":{"payload":P}}`.
pub fn twilio_media(stream_sid: &str, payload: &str) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        event: &'static str,
        stream_sid: &'a str,
        media: Payload<'a>,
    }
    #[derive(Serialize)]
    struct Payload<'a> {
        payload: &'a str,
    }
    to_text_sized(&Out { event: "media", stream_sid, media: Payload { payload } }, payload.len() + stream_sid.len() + 64)
}

/// `{"event":"mark","streamSid":S,"mark":{"name":N}}`: Twilio echoes it once the audio before it played.
pub fn twilio_mark(stream_sid: &str, name: &str) -> String {
    to_text(&serde_json::json!({ "event": "mark", "streamSid": stream_sid, "mark": { "name": name } }))
}

/// `{"event":"clear","streamSid":S}`: Twilio drops the audio it has buffered (barge-in).
pub fn twilio_clear(stream_sid: &str) -> String {
    to_text(&serde_json::json!({ "event": "clear", "streamSid": stream_sid }))
}

/// A message ElevenLabs sends on the conversation socket; audio borrows from it, as Twilio's does.
#[derive(Debug)]
pub enum FromAgent<'a> {
    ConversationInitiationMetadata(InitiationMetadata),
    Audio(AudioEvent<'a>),
    UserTranscript(UserTranscription),
    AgentResponse(AgentResponse),
    Interruption(EventRef),
    Ping(EventRef),
    ClientToolCall(ToolCall),
    Other,
}

#[derive(Deserialize)]
struct AgentMessage<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    conversation_initiation_metadata_event: Option<InitiationMetadata>,
    #[serde(borrow)]
    audio_event: Option<AudioEvent<'a>>,
    user_transcription_event: Option<UserTranscription>,
    agent_response_event: Option<AgentResponse>,
    interruption_event: Option<EventRef>,
    ping_event: Option<EventRef>,
    client_tool_call: Option<ToolCall>,
}

impl<'a> FromAgent<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        let m: AgentMessage<'a> = serde_json::from_str(text)?;
        Ok(match m.kind.as_ref() {
            "conversation_initiation_metadata" => Self::ConversationInitiationMetadata(part(
                m.conversation_initiation_metadata_event,
                "conversation_initiation_metadata_event",
            )?),
            "audio" => Self::Audio(part(m.audio_event, "audio_event")?),
            "user_transcript" => Self::UserTranscript(part(m.user_transcription_event, "user_transcription_event")?),
            "agent_response" => Self::AgentResponse(part(m.agent_response_event, "agent_response_event")?),
            "interruption" => Self::Interruption(part(m.interruption_event, "interruption_event")?),
            "ping" => Self::Ping(part(m.ping_event, "ping_event")?),
            "client_tool_call" => Self::ClientToolCall(part(m.client_tool_call, "client_tool_call")?),
            _ => Self::Other,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct InitiationMetadata {
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub agent_output_audio_format: Option<String>,
    #[serde(default)]
    pub user_input_audio_format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AudioEvent<'a> {
    #[serde(borrow)]
    pub audio_base_64: Cow<'a, str>,
    #[serde(default)]
    pub event_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct UserTranscription {
    pub user_transcript: String,
}

#[derive(Debug, Deserialize)]
pub struct AgentResponse {
    pub agent_response: String,
}

#[derive(Debug, Deserialize)]
pub struct EventRef {
    pub event_id: u64,
}

#[derive(Debug, Deserialize)]
pub struct ToolCall {
    pub tool_name: String,
    pub tool_call_id: String,
    #[serde(default)]
    pub parameters: Value,
}

/// Caller audio for the agent: `{"user_audio_chunk":"<base64>"}` (no `type` field).
pub fn agent_audio(payload: &str) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        user_audio_chunk: &'a str,
    }
    to_text_sized(&Out { user_audio_chunk: payload }, payload.len() + 24)
}

pub fn agent_pong(event_id: u64) -> String {
    to_text(&serde_json::json!({ "type": "pong", "event_id": event_id }))
}

pub fn agent_tool_result(tool_call_id: &str, result: &str, is_error: bool) -> String {
    to_text(&serde_json::json!({ "type": "client_tool_result", "tool_call_id": tool_call_id, "result": result, "is_error": is_error }))
}

pub fn agent_contextual_update(text: &str) -> String {
    to_text(&serde_json::json!({ "type": "contextual_update", "text": text }))
}

/// The conversation's first message: the contact's dynamic variables, and overrides of the
/// assistant's prompt, first message, language and voice when outdial manages the assistant.
pub fn agent_initiation(variables: &BTreeMap<String, String>, overrides: Option<&domain::AssistantConfig>) -> String {
    let mut message = serde_json::json!({ "type": "conversation_initiation_client_data", "dynamic_variables": variables });
    if let Some(config) = overrides {
        let mut agent = serde_json::json!({ "prompt": { "prompt": config.system_prompt }, "first_message": config.first_message });
        if let Some(language) = &config.language {
            agent["language"] = language.as_str().into();
        }
        let mut override_ = serde_json::json!({ "agent": agent });
        if let Some(voice) = &config.voice {
            override_["tts"] = serde_json::json!({ "voice_id": voice.voice_id });
        }
        message["conversation_config_override"] = override_;
    }
    to_text(&message)
}

/// The event's own object, which its `event`/`type` promised.
fn part<T>(present: Option<T>, name: &'static str) -> Result<T, serde_json::Error> {
    present.ok_or_else(|| serde::de::Error::missing_field(name))
}

fn to_text(value: &impl Serialize) -> String {
    to_text_sized(value, 128)
}

/// Audio frames are written once per 20 ms per call: sized up front, they are one allocation.
fn to_text_sized(value: &impl Serialize, capacity: usize) -> String {
    let mut text = Vec::with_capacity(capacity);
    // our own structs of strings and numbers into memory: serialising them cannot fail
    let _ = serde_json::to_writer(&mut text, value);
    String::from_utf8(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_frames_parse_with_string_numbers() {
        let start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],"customParameters":{"callId":"c"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        let FromTwilio::Start(start) = FromTwilio::parse(start).unwrap() else { panic!("a start") };
        assert_eq!((start.stream_sid.as_str(), start.call_sid.as_str()), ("MZ1", "CA1"));
        assert_eq!(start.custom_parameters["callId"], "c");
        let media = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"//8="}}"#;
        assert!(matches!(FromTwilio::parse(media).unwrap(), FromTwilio::Media(media) if media.payload == "//8="));
        assert!(matches!(FromTwilio::parse(r#"{"event":"something-new"}"#).unwrap(), FromTwilio::Other));
        assert!(FromTwilio::parse(r#"{"event":"media","streamSid":"MZ1"}"#).is_err(), "a media frame without its media");
    }

    #[test]
    fn agent_messages_parse_and_ours_match_the_protocol() {
        let ping = r#"{"type":"ping","ping_event":{"event_id":7,"ping_ms":null}}"#;
        assert!(matches!(FromAgent::parse(ping).unwrap(), FromAgent::Ping(ping) if ping.event_id == 7));
        let audio = r#"{"type":"audio","audio_event":{"audio_base_64":"AA\/8=","event_id":3}}"#;
        assert!(matches!(FromAgent::parse(audio).unwrap(), FromAgent::Audio(a) if a.audio_base_64 == "AA/8=" && a.event_id == Some(3)));
        assert_eq!(agent_pong(7), r#"{"event_id":7,"type":"pong"}"#);
        assert_eq!(agent_audio("AA=="), r#"{"user_audio_chunk":"AA=="}"#);
        assert_eq!(twilio_media("MZ1", "AA=="), r#"{"event":"media","streamSid":"MZ1","media":{"payload":"AA=="}}"#);
        assert!(matches!(FromAgent::parse(r#"{"type":"vad_score","vad_score_event":{"vad_score":0.1}}"#).unwrap(), FromAgent::Other));
    }
}
