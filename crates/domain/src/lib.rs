//! huiliu's domain core: the rules and types every other crate builds on.
//!
//! Nothing here performs IO. Randomness and the current time are passed in,
//! so every rule can be tested with fixed inputs.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod apps;
pub mod credits;
pub mod earning;
pub mod error;
pub mod events;
pub mod ids;
pub mod keys;
pub mod mall;
pub mod messages;
pub mod points;
pub mod secrets;
pub mod templates;
pub mod tiers;
pub mod time;
pub mod users;
pub mod wechat;
pub mod wechat_push;

pub use error::FieldError;
