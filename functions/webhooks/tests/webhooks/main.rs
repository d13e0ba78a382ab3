//! The webhooks integration tests in one binary (each test binary links the whole stack once);
//! each module says what it tests.

mod chaos;
mod common;
mod events;
mod webhooks;
