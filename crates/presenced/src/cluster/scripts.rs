//! The Lua scripts, one per transition, and reading their replies.
//!
//! A write script is `prelude.lua` (fencing, replay, Redis's clock), then
//! the helpers of its side (`user.lua` or `member.lua`), then its own file,
//! put together at compile time. The node scripts stand alone.

use std::sync::LazyLock;

use redis::{Script, Value};

use super::ClusterError;

macro_rules! write_script {
    ($side:literal, $file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $side)),
                include_str!(concat!("lua/", $file)),
            ))
        })
    };
}

pub(super) static SESSION_ADDED: LazyLock<Script> = write_script!("user.lua", "session_added.lua");
pub(super) static SESSION_DROPPED: LazyLock<Script> =
    write_script!("user.lua", "session_dropped.lua");
pub(super) static SESSION_BACK: LazyLock<Script> = write_script!("user.lua", "session_back.lua");
pub(super) static SESSION_STATUS: LazyLock<Script> =
    write_script!("user.lua", "session_status.lua");
pub(super) static SESSION_GONE: LazyLock<Script> = write_script!("user.lua", "session_gone.lua");
pub(super) static MEMBER_ENTER: LazyLock<Script> = write_script!("member.lua", "member_enter.lua");
pub(super) static MEMBER_UPDATE: LazyLock<Script> =
    write_script!("member.lua", "member_update.lua");
pub(super) static MEMBER_LEAVE: LazyLock<Script> = write_script!("member.lua", "member_leave.lua");
pub(super) static REGISTER_NODE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/register_node.lua")));
pub(super) static RENEW_NODE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/renew_node.lua")));

/// Every script, for loading them all at once.
pub(super) fn all() -> [&'static Script; 10] {
    [
        &SESSION_ADDED,
        &SESSION_DROPPED,
        &SESSION_BACK,
        &SESSION_STATUS,
        &SESSION_GONE,
        &MEMBER_ENTER,
        &MEMBER_UPDATE,
        &MEMBER_LEAVE,
        &REGISTER_NODE,
        &RENEW_NODE,
    ]
}

/// A script's reply: a flat array of strings and integers.
#[derive(Debug)]
pub(super) struct Reply(Vec<Value>);

impl Reply {
    pub(super) fn new(v: Value) -> Result<Reply, ClusterError> {
        match v {
            Value::Array(items) => Ok(Reply(items)),
            other => Err(ClusterError::Reply(format!("not an array: {other:?}"))),
        }
    }

    fn get(&self, i: usize) -> Result<&Value, ClusterError> {
        self.0
            .get(i)
            .ok_or_else(|| ClusterError::Reply(format!("{} fields, no {i}", self.0.len())))
    }

    pub(super) fn str(&self, i: usize) -> Result<String, ClusterError> {
        match self.get(i)? {
            Value::BulkString(b) => String::from_utf8(b.clone())
                .map_err(|_| ClusterError::Reply(format!("field {i} is not UTF-8"))),
            Value::SimpleString(s) => Ok(s.clone()),
            Value::Int(n) => Ok(n.to_string()),
            other => Err(ClusterError::Reply(format!("field {i}: {other:?}"))),
        }
    }

    pub(super) fn int(&self, i: usize) -> Result<u64, ClusterError> {
        let bad = || ClusterError::Reply(format!("field {i} is not a count"));
        match self.get(i)? {
            Value::Int(n) => u64::try_from(*n).map_err(|_| bad()),
            Value::BulkString(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }

    pub(super) fn count(&self, i: usize) -> Result<u32, ClusterError> {
        u32::try_from(self.int(i)?)
            .map_err(|_| ClusterError::Reply(format!("field {i} is out of range")))
    }

    pub(super) fn flag(&self, i: usize) -> Result<bool, ClusterError> {
        Ok(self.int(i)? != 0)
    }
}
