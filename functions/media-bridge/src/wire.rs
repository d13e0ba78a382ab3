//! The two sockets' messages, exactly as PROTOCOLS.md gives them: Twilio Media Streams (JSON text
//! frames, numeric-looking fields as strings) and ElevenLabs Conversational AI.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A frame Twilio sends on the media stream.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum FromTwilio {
    Connected,
    Start {
        start: StreamStart,
    },
    Media {
        media: Media,
    },
    Dtmf {
        dtmf: Dtmf,
    },
    Mark {
        mark: MarkName,
    },
    Stop,
    #[serde(other)]
    Other,
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
pub struct Media {
    pub payload: String,
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
    to_text(&Out { event: "media", stream_sid, media: Payload { payload } })
}

/// `{"event":"mark","streamSid":S,"mark":{"name":N}}`: Twilio echoes it once the audio before it played.
pub fn twilio_mark(stream_sid: &str, name: &str) -> String {
    to_text(&serde_json::json!({ "event": "mark", "streamSid": stream_sid, "mark": { "name": name } }))
}

/// `{"event":"clear","streamSid":S}`: Twilio drops the audio it has buffered (barge-in).
pub fn twilio_clear(stream_sid: &str) -> String {
    to_text(&serde_json::json!({ "event": "clear", "streamSid": stream_sid }))
}

/// A message ElevenLabs sends on the conversation socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromAgent {
    ConversationInitiationMetadata {
        conversation_initiation_metadata_event: InitiationMetadata,
    },
    Audio {
        audio_event: AudioEvent,
    },
    UserTranscript {
        user_transcription_event: UserTranscription,
    },
    AgentResponse {
        agent_response_event: AgentResponse,
    },
    Interruption {
        interruption_event: EventRef,
    },
    Ping {
        ping_event: EventRef,
    },
    ClientToolCall {
        client_tool_call: ToolCall,
    },
    #[serde(other)]
    Other,
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
pub struct AudioEvent {
    pub audio_base_64: String,
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
    to_text(&Out { user_audio_chunk: payload })
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

fn to_text(value: &impl Serialize) -> String {
    // our own structs of strings and numbers: serialising them cannot fail
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_frames_parse_with_string_numbers() {
        let start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],"customParameters":{"callId":"c"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        let FromTwilio::Start { start } = serde_json::from_str(start).unwrap() else { panic!("a start") };
        assert_eq!((start.stream_sid.as_str(), start.call_sid.as_str()), ("MZ1", "CA1"));
        assert_eq!(start.custom_parameters["callId"], "c");
        let media = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"//8="}}"#;
        assert!(matches!(serde_json::from_str(media).unwrap(), FromTwilio::Media { media } if media.payload == "//8="));
        assert!(matches!(serde_json::from_str(r#"{"event":"something-new"}"#).unwrap(), FromTwilio::Other));
    }

    #[test]
    fn agent_messages_parse_and_ours_match_the_protocol() {
        let ping = r#"{"type":"ping","ping_event":{"event_id":7,"ping_ms":null}}"#;
        assert!(matches!(serde_json::from_str(ping).unwrap(), FromAgent::Ping { ping_event } if ping_event.event_id == 7));
        assert_eq!(agent_pong(7), r#"{"event_id":7,"type":"pong"}"#);
        assert_eq!(agent_audio("AA=="), r#"{"user_audio_chunk":"AA=="}"#);
        assert_eq!(twilio_media("MZ1", "AA=="), r#"{"event":"media","streamSid":"MZ1","media":{"payload":"AA=="}}"#);
        assert!(matches!(serde_json::from_str(r#"{"type":"vad_score","vad_score_event":{"vad_score":0.1}}"#).unwrap(), FromAgent::Other));
    }
}
