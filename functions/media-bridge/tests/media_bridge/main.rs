//! The media_bridge integration tests in one binary (each test binary links the whole stack once);
//! each module says what it tests.

mod bridge;
mod protection;
mod service;
