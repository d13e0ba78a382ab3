//! The end_to_end integration tests in one binary (each test binary links the whole stack once);
//! each module says what it tests.

mod architecture;
mod crm_sync;
mod demo;
mod deployment;
mod dial_path;
mod local_stack;
mod native_tools;
mod twilio_bridge;
