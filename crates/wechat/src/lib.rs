//! WeChat as huiliu meets it: a faithful fake of the server ([`fake`]) for tests
//! and local development. The client that calls the real API will live here too.
#![forbid(unsafe_code)]

pub mod fake;
