//! The providers integration tests in one binary (each test binary links the whole stack once);
//! each module says what it tests.

mod assistant_providers;
mod calcom;
mod call_providers;
mod crm_webhook;
