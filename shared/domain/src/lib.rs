//! outdial's domain: values that cannot be invalid, the call state machine, the contact
//! lifecycle and the dialing policy. Pure: no I/O, no clocks, no randomness beyond id creation.

/// Documents a validated type by the schema of the wire form it is parsed from.
macro_rules! schema_as_wire_form {
    ($ty:ty, $wire:ty) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <$wire as utoipa::PartialSchema>::schema()
            }
        }
        impl utoipa::ToSchema for $ty {
            fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
                <$wire as utoipa::ToSchema>::schemas(schemas);
            }
        }
    };
}
pub(crate) use schema_as_wire_form;

pub mod assistant;
pub mod call;
pub mod caller_id;
pub mod calling_hours;
pub mod campaign;
pub mod contact;
pub mod crm;
pub mod dialing;
pub mod error;
pub mod ids;
pub mod import;
pub mod money;
pub mod org;
pub mod phone;
pub mod policy;
pub mod provider_status;
pub mod report;
pub mod tools;
pub mod upload;

pub use assistant::{
    Assistant, AssistantConfig, AssistantPatch, AssistantSource, AssistantVersion, NewAssistant, ProviderKind, ReadOnlyTemplate, Voice,
};
pub use call::{
    AnsweredBy, Call, CallDetails, CallDisposition, CallEvent, CallEventKind, CallState, EndReason, REPORT_GRACE, Transcript, Transition,
    VoicemailStep, asks_not_to_be_called,
};
pub use caller_id::CallerId;
pub use calling_hours::{CallingArea, EffectiveWindow, UsState};
pub use campaign::{
    CallProvider, Campaign, CampaignCounters, CampaignPlan, CampaignSettings, CampaignSpec, CampaignStatus, CrmTarget, DialMode,
    NewCampaign, StartRefusal, UnmetCheck, Voicemail, VoicemailAction,
};
pub use contact::{Consent, ConsentSource, Contact, ContactDisposition, ContactFate, ContactState, NewContact};
pub use dialing::{CALL_ID_VARIABLE, Clearance, CrmJob, DialCheck, DialJob, DialSlot, ORG_ID_VARIABLE, Pace, Swept, id_variables};
pub use error::ParseError;
pub use ids::{AssistantId, CallId, CampaignId, ConnectionId, ContactId, OrgId, UploadId};
pub use money::Money;
pub use org::{EmergencyStop, Organisation};
pub use phone::{E164, Region, mask_phone, mask_phones_in};
pub use policy::{CallingWindow, Cap, Day, RetryOutcome, RetryPolicy};
pub use tools::{AgentTool, Booking, EmailAddress, EmailTemplate, FollowUpEmail, mask_email};
