//! Channel rules: who may subscribe, enter and publish where, and what guests see.
//!
//! Rules come from the operator's configuration and are matched by glob on the
//! channel name, first match wins. A token's `channels` claim narrows them
//! further for one user.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One `[[channels]]` entry of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// Glob on the channel name: `*` matches any run of characters.
    pub pattern: String,
    /// Authenticated users may subscribe.
    #[serde(default = "yes")]
    pub subscribe: bool,
    /// Authenticated users may enter.
    #[serde(default = "yes")]
    pub enter: bool,
    /// Guests may subscribe (never enter).
    #[serde(default)]
    pub guests: bool,
    /// Member data fields guests see beside the user id; dotted paths reach
    /// into objects (`info.name`).
    #[serde(default)]
    pub public_fields: Vec<String>,
    /// Subscribers with the right to subscribe may publish messages.
    #[serde(default = "yes")]
    pub publish: bool,
    /// `enter` beyond this many members gets `limit_exceeded`.
    #[serde(default)]
    pub max_members: Option<usize>,
}

fn yes() -> bool {
    true
}

impl ChannelRule {
    /// The rule used when no configured rule matches: authenticated users may
    /// do everything, guests nothing.
    pub fn default_for_unmatched() -> Self {
        ChannelRule {
            pattern: "*".into(),
            subscribe: true,
            enter: true,
            guests: false,
            public_fields: Vec::new(),
            publish: true,
            max_members: None,
        }
    }

    /// The public projection of member data: only the listed fields.
    pub fn project(&self, data: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for field in &self.public_fields {
            let mut path = field.split('.');
            let Some(first) = path.next() else { continue };
            let rest: Vec<&str> = path.collect();
            let Some(mut value) = data.get(first) else {
                continue;
            };
            let mut found = true;
            for key in &rest {
                match value.get(*key) {
                    Some(v) => value = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if !found {
                continue;
            }
            insert_path(&mut out, first, &rest, value.clone());
        }
        out
    }
}

fn insert_path(out: &mut Map<String, Value>, first: &str, rest: &[&str], value: Value) {
    match rest.split_first() {
        None => {
            out.insert(first.to_owned(), value);
        }
        Some((next, tail)) => {
            let slot = out
                .entry(first.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = slot {
                insert_path(inner, next, tail, value);
            }
        }
    }
}

/// The ordered rule list of a server.
#[derive(Debug, Clone)]
pub struct ChannelRules {
    rules: Vec<ChannelRule>,
    fallback: ChannelRule,
}

impl Default for ChannelRules {
    fn default() -> Self {
        ChannelRules::new(Vec::new())
    }
}

impl ChannelRules {
    pub fn new(rules: Vec<ChannelRule>) -> Self {
        ChannelRules {
            rules,
            fallback: ChannelRule::default_for_unmatched(),
        }
    }

    /// First matching rule, or the permissive default.
    pub fn rule_for(&self, channel: &str) -> &ChannelRule {
        self.rules
            .iter()
            .find(|r| glob_match(&r.pattern, channel))
            .unwrap_or(&self.fallback)
    }
}

/// Glob match where `*` matches any run of characters (including none) and
/// every other character matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Channel names: 1–200 bytes of `[A-Za-z0-9_:.@/=-]`.
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:.@/=-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("lobby:*", "lobby:1"));
        assert!(glob_match("lobby:*", "lobby:"));
        assert!(!glob_match("lobby:*", "lobbyx"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c*e", "abcdf"));
        assert!(glob_match("room:42", "room:42"));
        assert!(!glob_match("room:42", "room:421"));
    }

    #[test]
    fn names() {
        assert!(valid_channel_name("room:42"));
        assert!(valid_channel_name("a.b@c/d=e-f_g"));
        assert!(!valid_channel_name(""));
        assert!(!valid_channel_name("room 42"));
        assert!(!valid_channel_name(&"a".repeat(201)));
        assert!(valid_channel_name(&"a".repeat(200)));
    }

    #[test]
    fn first_match_wins() {
        let mut a = ChannelRule::default_for_unmatched();
        a.pattern = "lobby:*".into();
        a.guests = true;
        let mut b = ChannelRule::default_for_unmatched();
        b.pattern = "*".into();
        b.enter = false;
        let rules = ChannelRules::new(vec![a, b]);
        assert!(rules.rule_for("lobby:1").guests);
        assert!(!rules.rule_for("room:1").enter);
    }

    #[test]
    fn projection_keeps_only_public_fields() {
        let mut rule = ChannelRule::default_for_unmatched();
        rule.public_fields = vec!["name".into(), "info.avatar".into(), "missing".into()];
        let data = json!({"name": "Al", "email": "a@x", "info": {"avatar": "a.png", "phone": "1"}});
        let out = rule.project(data.as_object().unwrap());
        assert_eq!(
            Value::Object(out),
            json!({"name": "Al", "info": {"avatar": "a.png"}})
        );
    }

    #[test]
    fn default_rules_allow_users_everything_and_guests_nothing() {
        let rule = ChannelRules::default().rule_for("any:thing").clone();
        assert_eq!(rule, ChannelRule::default_for_unmatched());
        assert!(rule.subscribe && rule.enter && rule.publish && !rule.guests);
    }

    #[test]
    fn rule_from_toml_defaults() {
        let rule: ChannelRule = serde_json::from_value(json!({"pattern": "x:*"})).unwrap();
        assert!(rule.enter && rule.subscribe && rule.publish && !rule.guests);
    }
}
