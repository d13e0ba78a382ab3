//! Assistants: reusable AI voice agents, kept in a directory and mirrored at a provider.

use crate::{AssistantId, OrgId, ParseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an assistant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Vapi,
    Elevenlabs,
    Retell,
    /// In-process simulated provider for the demo and tests.
    Simulator,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vapi => "vapi",
            Self::Elevenlabs => "elevenlabs",
            Self::Retell => "retell",
            Self::Simulator => "simulator",
        }
    }
}

/// How an assistant came into the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssistantSource {
    Local,
    Imported,
    Template,
}

impl AssistantSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Imported => "imported",
            Self::Template => "template",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Voice {
    /// The voice's vendor as the provider names it (e.g. `11labs`).
    pub provider: String,
    pub voice_id: String,
}

/// What an assistant says and how it behaves on a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssistantConfig {
    pub system_prompt: String,
    /// The opening line; regulation wants it to say the caller is an AI assistant.
    pub first_message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_call_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<Voice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_seconds: Option<u32>,
    /// The tools declared on the provider's agent, served by outdial's `/tools/*` routes; absent:
    /// `current_time`, `add_to_do_not_call` and `end_call`, with `book_appointment` and
    /// `send_email` where the deployment has booking and email set up. `[]` declares none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<crate::AgentTool>>,
}

impl AssistantConfig {
    pub const MAX_PROMPT_CHARS: usize = 20_000;
    pub const MAX_MESSAGE_CHARS: usize = 1_000;

    /// Every reason the config cannot be used, not just the first.
    pub fn validate(&self) -> Result<(), Vec<ParseError>> {
        let mut errors = Vec::new();
        let mut text = |field: &'static str, value: &str, max: usize| {
            let chars = value.trim().chars().count();
            if chars == 0 || chars > max {
                errors.push(ParseError::new(field, format!("must be 1–{max} characters")));
            }
        };
        text("config.systemPrompt", &self.system_prompt, Self::MAX_PROMPT_CHARS);
        text("config.firstMessage", &self.first_message, Self::MAX_MESSAGE_CHARS);
        if let Some(m) = &self.end_call_message {
            text("config.endCallMessage", m, Self::MAX_MESSAGE_CHARS);
        }
        if let Some(v) = &self.voice {
            text("config.voice.provider", &v.provider, 100);
            text("config.voice.voiceId", &v.voice_id, 200);
        }
        if let Some(model) = &self.model {
            text("config.model", model, 200);
        }
        if let Some(s) = self.silence_timeout_seconds.filter(|s| !(5..=600).contains(s)) {
            errors.push(ParseError::new("config.silenceTimeoutSeconds", format!("{s} is outside 5–600 seconds")));
        }
        if let Some(s) = self.max_duration_seconds.filter(|s| !(10..=7_200).contains(s)) {
            errors.push(ParseError::new("config.maxDurationSeconds", format!("{s} is outside 10–7200 seconds")));
        }
        if let Some(tools) = &self.tools {
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = tools.iter().find(|t| !seen.insert(**t)) {
                errors.push(ParseError::new("config.tools", format!("names {} twice", twice.as_str())));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// The tools the agent is declared with: its own list, or the defaults.
    pub fn declared_tools(&self, booking: bool, email: bool) -> Vec<crate::AgentTool> {
        self.tools.clone().unwrap_or_else(|| crate::AgentTool::defaults(booking, email))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Assistant {
    pub id: AssistantId,
    pub org_id: OrgId,
    pub name: String,
    pub provider: ProviderKind,
    /// The assistant's id at its provider.
    pub provider_assistant_id: Option<String>,
    pub source: AssistantSource,
    pub config: AssistantConfig,
    pub active: bool,
    /// The public base URL (`OUTDIAL_PUBLIC_URL`) its agent's tools were last declared at; absent
    /// when they were declared without one (only the provider's own tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_url: Option<String>,
    /// Grows by one with every change; send it as `If-Match` to update.
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An assistant as it is added to the directory.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAssistant {
    pub name: String,
    pub provider: ProviderKind,
    pub provider_assistant_id: Option<String>,
    pub source: AssistantSource,
    pub config: AssistantConfig,
    /// Where its agent's tools were declared (see `Assistant::tools_url`).
    pub tools_url: Option<String>,
}

/// The provider resource an assistant stands for, which one organisation of the deployment owns:
/// every organisation shares the provider accounts. Templates name none: each organisation
/// installs its own copy under the same `template:` key.
fn owned_provider_id(source: AssistantSource, provider_assistant_id: Option<&String>) -> Option<&str> {
    provider_assistant_id.filter(|_| source != AssistantSource::Template).map(String::as_str)
}

impl NewAssistant {
    pub const MAX_NAME_CHARS: usize = 200;

    /// The provider id this assistant claims for its organisation, deployment-wide (none for templates).
    pub fn owned_provider_id(&self) -> Option<&str> {
        owned_provider_id(self.source, self.provider_assistant_id.as_ref())
    }

    /// A new assistant made here (not yet at its provider), or every reason it cannot be one.
    pub fn local(name: &str, provider: ProviderKind, config: AssistantConfig) -> Result<Self, Vec<ParseError>> {
        let name = parse_name(name);
        let config_errors = config.validate().err().unwrap_or_default();
        match name {
            Ok(name) if config_errors.is_empty() => {
                Ok(Self { name, provider, provider_assistant_id: None, source: AssistantSource::Local, config, tools_url: None })
            }
            name => Err(name.err().into_iter().chain(config_errors).collect()),
        }
    }
}

fn parse_name(name: &str) -> Result<String, ParseError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NewAssistant::MAX_NAME_CHARS {
        return Err(ParseError::new("name", format!("must be 1–{} characters", NewAssistant::MAX_NAME_CHARS)));
    }
    Ok(name.to_string())
}

/// A change to an assistant; absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AssistantPatch {
    pub name: Option<String>,
    pub config: Option<AssistantConfig>,
    pub active: Option<bool>,
    /// Where its agent's tools are now declared, when the provider's copy was written.
    pub tools_url: Option<Option<String>>,
}

/// The assistant as it was after one change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssistantVersion {
    pub version: u32,
    pub name: String,
    pub config: AssistantConfig,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl AssistantPatch {
    /// A change, or every reason it cannot be made.
    pub fn parse(name: Option<&str>, config: Option<AssistantConfig>, active: Option<bool>) -> Result<Self, Vec<ParseError>> {
        let mut errors = Vec::new();
        let name = name.map(parse_name).transpose().unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        if let Some(Err(config_errors)) = config.as_ref().map(AssistantConfig::validate) {
            errors.extend(config_errors);
        }
        if errors.is_empty() { Ok(Self { name, config, active, tools_url: None }) } else { Err(errors) }
    }

    /// Whether it changes what the provider holds (name or config): then the provider is told first.
    pub fn changes_provider_copy(&self, current: &Assistant) -> bool {
        self.name.as_ref().is_some_and(|n| *n != current.name) || self.config.as_ref().is_some_and(|c| *c != current.config)
    }
}

impl Assistant {
    /// The provider id its organisation owns deployment-wide (none for templates).
    pub fn owned_provider_id(&self) -> Option<&str> {
        owned_provider_id(self.source, self.provider_assistant_id.as_ref())
    }

    pub fn new(org_id: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Self {
        Self {
            id: AssistantId::new(),
            org_id,
            name: new.name,
            provider: new.provider,
            provider_assistant_id: new.provider_assistant_id,
            source: new.source,
            config: new.config,
            active: true,
            tools_url: new.tools_url,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies `patch`; true when anything changed (then the version has grown by one).
    pub fn apply(&mut self, patch: &AssistantPatch, now: DateTime<Utc>) -> bool {
        let changed = patch.name.as_ref().is_some_and(|n| *n != self.name)
            || patch.config.as_ref().is_some_and(|c| *c != self.config)
            || patch.active.is_some_and(|a| a != self.active)
            || patch.tools_url.as_ref().is_some_and(|u| *u != self.tools_url);
        if changed {
            if let Some(name) = &patch.name {
                self.name.clone_from(name);
            }
            if let Some(config) = &patch.config {
                self.config = config.clone();
            }
            if let Some(active) = patch.active {
                self.active = active;
            }
            if let Some(url) = &patch.tools_url {
                self.tools_url.clone_from(url);
            }
            self.version += 1;
            self.updated_at = now;
        }
        changed
    }

    /// Whether its agent's tools point somewhere other than `public_url` (or nowhere): an
    /// assistant outdial manages at a real provider, saved before `OUTDIAL_PUBLIC_URL` was set or
    /// changed. Imported agents keep the tools they came with.
    pub fn undeclared_tools(&self, public_url: Option<&str>) -> Option<crate::UnmetCheck> {
        let managed = self.source == AssistantSource::Local && self.provider != ProviderKind::Simulator;
        let declares_any = self.config.tools.as_ref().is_none_or(|tools| tools.iter().any(|t| *t != crate::AgentTool::EndCall));
        (managed && declares_any && self.tools_url.as_deref() != public_url)
            .then(|| crate::UnmetCheck::ToolsUndeclared { assistant: self.id, public_url: public_url.map(str::to_string) })
    }

    pub fn snapshot(&self) -> AssistantVersion {
        AssistantVersion {
            version: self.version,
            name: self.name.clone(),
            config: self.config.clone(),
            active: self.active,
            created_at: self.updated_at,
        }
    }
}

/// Why an assistant cannot be changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("assistant {0} is a built-in template and is read-only; clone it to get an editable copy")]
pub struct ReadOnlyTemplate(pub AssistantId);

impl Assistant {
    /// Templates are shared starting points: they are cloned, never edited or deleted.
    pub fn ensure_editable(&self) -> Result<(), ReadOnlyTemplate> {
        if self.source == AssistantSource::Template { Err(ReadOnlyTemplate(self.id)) } else { Ok(()) }
    }
}

/// The built-in templates every organisation gets. Each one is keyed at the simulator by
/// `template:<slug>`, so installing them again updates them instead of adding copies.
/// Every first message says the caller is an AI assistant (FCC 24-17 caller identification).
pub fn templates() -> [NewAssistant; 3] {
    let template = |slug: &str, name: &str, system_prompt: &str, first_message: &str, max_duration_seconds: u32| NewAssistant {
        name: name.into(),
        provider: ProviderKind::Simulator,
        provider_assistant_id: Some(format!("{TEMPLATE_PREFIX}{slug}")),
        source: AssistantSource::Template,
        config: AssistantConfig {
            system_prompt: system_prompt.into(),
            first_message: first_message.into(),
            end_call_message: Some("Thanks for your time. Goodbye!".into()),
            voice: None,
            model: None,
            language: None,
            silence_timeout_seconds: Some(20),
            max_duration_seconds: Some(max_duration_seconds),
            tools: None,
        },
        tools_url: None,
    };
    [
        template(
            "voicemail-friendly",
            "Voicemail-friendly",
            "You call on behalf of {{business_name}}. If a person answers, say why you are calling in one sentence and ask \
             whether now is a good time. If you reach voicemail, leave a message under 20 seconds with the reason for the call \
             and a callback number, then end the call. If anyone asks not to be called again, confirm it and end the call.",
            "Hi {{first_name}}, this is an AI assistant calling on behalf of {{business_name}}.",
            180,
        ),
        template(
            "short-pitch",
            "Short pitch",
            "You are a concise, friendly caller for {{business_name}}. Give a two-sentence pitch, answer questions briefly, \
             and offer to book a follow-up. Never pressure. If asked not to be called again, confirm it and end the call.",
            "Hello {{first_name}}, I'm an AI assistant calling from {{business_name}} with a quick 30-second idea. Is now okay?",
            300,
        ),
        template(
            "discovery",
            "Discovery call",
            "You run a short discovery call for {{business_name}}: learn the person's current situation, their main problem \
             and their timeline, one open question at a time, and summarise what you heard before you close. If asked not to be \
             called again, confirm it and end the call.",
            "Hi {{first_name}}, this is an AI assistant from {{business_name}}. I'd love to ask you a few quick questions. Do you have a minute?",
            600,
        ),
    ]
}

/// The provider-id prefix that marks the built-in templates.
pub const TEMPLATE_PREFIX: &str = "template:";

#[cfg(test)]
mod tests {
    use super::*;

    pub fn config() -> AssistantConfig {
        AssistantConfig {
            system_prompt: "You book demos.".into(),
            first_message: "Hi, this is an AI assistant calling for Acme.".into(),
            end_call_message: None,
            voice: None,
            model: None,
            language: None,
            silence_timeout_seconds: Some(30),
            max_duration_seconds: None,
            tools: None,
        }
    }

    #[test]
    fn validation_lists_every_problem() {
        assert!(config().validate().is_ok());
        let bad = AssistantConfig { system_prompt: " ".into(), first_message: String::new(), silence_timeout_seconds: Some(1), ..config() };
        let fields: Vec<_> = bad.validate().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["config.systemPrompt", "config.firstMessage", "config.silenceTimeoutSeconds"]);
    }

    #[test]
    fn tools_declared_elsewhere_or_nowhere_fail_the_launch_check() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut a = Assistant::new(OrgId::new(), NewAssistant::local("A", ProviderKind::Vapi, config()).unwrap(), t);
        let code = |a: &Assistant, url| a.undeclared_tools(url).map(|u| (u.code(), u.message()));
        let (check, message) = code(&a, Some("https://outdial.example")).unwrap();
        assert_eq!(check, "assistant-tools-undeclared");
        assert!(message.contains("not declared at https://outdial.example") && message.contains("PATCH /assistants/"), "{message}");
        // a deployment without a public URL declares none, and asks for none
        assert_eq!(code(&a, None), None);
        a.tools_url = Some("https://outdial.example".into());
        assert_eq!(code(&a, Some("https://outdial.example")), None);
        assert!(code(&a, None).unwrap().1.contains("set OUTDIAL_PUBLIC_URL"));
        // only ending the call needs no URL; imported agents and the simulator keep what they have
        a.config.tools = Some(vec![crate::AgentTool::EndCall]);
        assert_eq!(code(&a, Some("https://elsewhere.example")), None);
        a.config.tools = None;
        a.source = AssistantSource::Imported;
        assert_eq!(code(&a, None), None);
        a.source = AssistantSource::Local;
        a.provider = ProviderKind::Simulator;
        assert_eq!(code(&a, None), None);
    }

    #[test]
    fn only_real_changes_make_a_version() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let new = NewAssistant {
            name: "A".into(),
            provider: ProviderKind::Simulator,
            provider_assistant_id: None,
            source: AssistantSource::Local,
            config: config(),
            tools_url: None,
        };
        let mut a = Assistant::new(OrgId::new(), new, t);
        assert!(!a.apply(&AssistantPatch { name: Some("A".into()), ..Default::default() }, t));
        assert_eq!(a.version, 1);
        assert!(a.apply(&AssistantPatch { active: Some(false), ..Default::default() }, t));
        assert_eq!((a.version, a.active), (2, false));
        assert_eq!(serde_json::to_value(&a).unwrap()["config"]["firstMessage"], "Hi, this is an AI assistant calling for Acme.");
    }

    #[test]
    fn new_assistants_and_patches_report_every_bad_field() {
        assert_eq!(NewAssistant::local(" Sales ", ProviderKind::Vapi, config()).unwrap().name, "Sales");
        let bad = AssistantConfig { first_message: String::new(), ..config() };
        let fields = |errors: Vec<ParseError>| errors.into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert_eq!(fields(NewAssistant::local("", ProviderKind::Vapi, bad.clone()).unwrap_err()), ["name", "config.firstMessage"]);
        assert_eq!(fields(AssistantPatch::parse(Some(" "), Some(bad), None).unwrap_err()), ["name", "config.firstMessage"]);
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let a = Assistant::new(OrgId::new(), NewAssistant::local("Sales", ProviderKind::Vapi, config()).unwrap(), t);
        assert!(!AssistantPatch::parse(Some("Sales"), Some(config()), Some(false)).unwrap().changes_provider_copy(&a));
        assert!(AssistantPatch::parse(Some("Sales 2"), None, None).unwrap().changes_provider_copy(&a));
    }

    #[test]
    fn templates_are_valid_read_only_and_disclose_the_ai() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for new in templates() {
            assert!(new.config.validate().is_ok(), "{}", new.name);
            assert!(new.config.first_message.contains("AI assistant"), "{}", new.name);
            let template = Assistant::new(OrgId::new(), new, t);
            assert_eq!(template.ensure_editable(), Err(ReadOnlyTemplate(template.id)));
        }
        let local = Assistant::new(OrgId::new(), NewAssistant { source: AssistantSource::Local, ..templates()[0].clone() }, t);
        assert!(local.ensure_editable().is_ok());
    }

    #[test]
    fn templates_claim_no_provider_id_and_everything_else_does() {
        for new in templates() {
            assert_eq!(new.owned_provider_id(), None, "{}", new.name);
            assert_eq!(Assistant::new(OrgId::new(), new, DateTime::UNIX_EPOCH).owned_provider_id(), None);
        }
        let imported =
            NewAssistant { source: AssistantSource::Imported, provider_assistant_id: Some("asst_1".into()), ..templates()[0].clone() };
        assert_eq!(imported.owned_provider_id(), Some("asst_1"));
        assert_eq!(NewAssistant { provider_assistant_id: None, ..imported }.owned_provider_id(), None);
    }
}
