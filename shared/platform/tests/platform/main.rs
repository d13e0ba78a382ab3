//! The platform integration tests in one binary (each test binary links the whole stack once);
//! each module says what it tests.

mod deployment_secret;
mod email;
mod queue_conformance;
mod scheduler_conformance;
mod sealed;
