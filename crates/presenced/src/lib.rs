//! presenced: a self-hosted real-time user presence server.
//!
//! `config` and `auth` turn settings and tokens into values, `hub` holds the
//! one presence engine and the sockets bound to it, `ws` runs a WebSocket
//! connection, `server` wires the routes and the shutdown.

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
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
