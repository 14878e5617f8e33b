//! presenced: a self-hosted real-time user presence server.
//!
//! The modules, from the bottom up: `clock`, `metrics` and `events` (leaves),
//! `config`, `auth`, `store`, `hub` (the one way into the presence engine),
//! `stats`, `state` (what every handler shares), `http` (the HTTP edge's
//! error and extractors), the routes `ws`, `api`, `web` and `webhooks`,
//! `conns` (the accept loop: connection caps and timeouts), and `server`,
//! which wires the routes, start-up and shutdown. `cluster` (the Redis
//! side of the shared presence state) stands apart: nothing uses it yet.
//! The README's architecture section says what each holds.

pub mod api;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conns;
pub mod events;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod outbound;
pub mod server;
pub mod state;
pub mod stats;
pub mod store;
pub mod web;
pub mod webhooks;
pub mod ws;
