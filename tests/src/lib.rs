//! End-to-end tests of outdial through its HTTP surface live in `tests/`.
