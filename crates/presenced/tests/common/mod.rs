//! Black-box harness: runs the real `presenced` binary as a child process and
//! speaks the wire protocol to it over real WebSockets.
//!
//! - [`Server`] (`server.rs`) starts `presenced serve` on `127.0.0.1:0` in a
//!   temporary data directory, waits for its `listening on http://…` line,
//!   keeps draining its output (kept for failure reports) and kills it on
//!   drop; [`Opts`] are its settings.
//! - [`Client`] (`client.rs`) is one WebSocket connection with a background
//!   reader, so it always answers the server's pings and never loses a frame;
//!   tests wait for the frame they expect with a timeout instead of sleeping.
//! - [`Drone`] (`drone.rs`) is a cheap connection for load tests: it enters a
//!   channel and then reads and discards everything.
//! - [`View`] (`view.rs`) applies `sync`/`join`/`update`/`leave`/`diff`
//!   frames to a member map and checks that `seq` has no gaps; beside it, the
//!   predicates on frames ([`is_join`], [`syncs`], …).
//! - [`Proxy`] (`proxy.rs`) is a TCP proxy that passes, holds (a blackhole)
//!   or resets, standing in for the network between a server and Redis.
//! - `tokens.rs` signs tokens with any HMAC algorithm, or none.
//! - `timing.rs`: the default wait ([`WAIT`]), polling ([`wait_for`]), the
//!   lock that serialises the heavy tests.
//!
//! Test files use it with `mod common; use common::*;`. The webhook receiver
//! is separate (`webhook_receiver.rs`, included by the files that need it),
//! and so are the Redis server of the cluster tests (`redis.rs`) and their
//! model of the shared presence rules (`presence_model.rs`).
//! Not every test file uses every helper, nor every re-export below.
#![allow(dead_code, unused_imports)]

mod client;
mod drone;
mod proxy;
mod raw;
mod server;
mod timing;
mod tokens;
mod view;

pub use client::{Client, Ws};
pub use drone::{Drone, connect_drones, enter_drones};
pub use proxy::{Link, Proxy};
pub use raw::{RawServer, spawn_raw};
pub use server::{Opts, RULES_TOML, Server};
pub use timing::{WAIT, heavy_lock, now_secs, wait_for};
pub use tokens::{alg_none_token, sign_with};
pub use view::{View, is_event, is_join, is_leave, is_update, members_of, mentions_user, syncs};
