//! WeChat as huiliu meets it: a faithful fake of the server ([`fake`]) for tests
//! and local development, and the client calls huiliu makes ([`client`]).
#![forbid(unsafe_code)]

pub mod client;
pub mod fake;
