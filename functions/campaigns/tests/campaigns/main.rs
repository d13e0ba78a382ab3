//! The campaigns integration tests in one binary (each test binary links the whole stack once);
//! each module says what it tests.

mod campaigns;
mod events;
mod uploads;
