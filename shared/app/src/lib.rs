//! outdial's use cases, each over the narrow ports it needs: campaign lifecycle and schedules,
//! the tick, placing a call, applying a webhook delivery, and the agent's tools. The functions
//! only translate their events to and from these; none decides anything itself.

pub mod crm;
pub mod delivery;
pub mod dial;
pub mod lifecycle;
pub mod recovery;
pub mod tick;
pub mod tools;

pub use crm::{ConnectionTest, CrmSync, CrmSyncStore, Requeued, RetryError, Synced};
pub use delivery::{Courier, Delivery, DeliveryStore};
pub use dial::{DialError, Dialed, Dialer, DialerSettings, Retry};
pub use lifecycle::{Lifecycle, LifecycleError};
pub use tick::{TickError, TickReport, TickRequests, TickStore, Ticker};
pub use tools::{
    AgentTools, ToolBudget, ToolCall, ToolDeclarations, ToolError, ToolStore, elevenlabs_tool_secret, is_elevenlabs_tool_secret,
};
