//! HTTP API tests, each run against SQLite and against PostgreSQL.

mod helpers;

mod analytics;
mod callback;
mod earning;
mod events;
mod fuzz;
mod mall;
mod messages;
mod operations;
mod points;
mod subscriptions;
mod templates;
mod users;
mod wechat_token;
