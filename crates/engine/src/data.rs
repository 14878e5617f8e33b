//! Member data as stored by the engine: the JSON text, not the parsed tree.
//!
//! A member's data is written far more often than it is looked into: every
//! snapshot and diff serializes it, while only guests' projections and the
//! HTTP API need its fields. A parsed `Map` (a `BTreeMap` whose first node
//! has room for 11 entries) costs about 600 bytes even for `{"name":"x"}`;
//! the text costs its length. The text is what serializing the `Map` gives,
//! keys sorted, so writing it raw is byte-identical to writing the `Map`, and
//! two data are equal exactly when their texts are.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::rules::ChannelRule;

/// A member's data object as canonical (sorted-key, compact) JSON text.
#[derive(Debug, Clone)]
pub(crate) struct MemberData(Box<RawValue>);

impl MemberData {
    /// Serializes the map once, on enter, update or restore.
    pub(crate) fn from_map(data: &Map<String, Value>) -> Self {
        // A `Map` always serializes: its keys are strings and `Value` has no
        // fallible parts (no non-finite floats).
        MemberData(serde_json::value::to_raw_value(data).expect("a JSON map always serializes"))
    }

    /// The stored JSON text.
    pub(crate) fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The data parsed back into a map (rare: a token's new `info` is
    /// merged into it).
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        // Stored from a map, so it parses back to one.
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }

    /// The public projection for guests, like [`ChannelRule::project`] on the
    /// parsed map (and byte-identical to it once serialized), but leaves are
    /// borrowed from the stored text: nothing but the objects on the public
    /// paths is parsed, and numbers are written as stored, never re-read.
    pub(crate) fn project(&self, rule: &ChannelRule) -> Projection<'_> {
        let mut out = BTreeMap::new();
        if rule.public_fields.is_empty() {
            return Projection(out);
        }
        let Some(top) = object(&self.0) else {
            return Projection(out);
        };
        for field in &rule.public_fields {
            let mut path = field.split('.');
            let Some(first) = path.next() else { continue };
            let rest: Vec<&str> = path.collect();
            let Some(mut value) = top.get(first).copied() else {
                continue;
            };
            let mut found = true;
            for key in &rest {
                match object(value).and_then(|o| o.get(*key).copied()) {
                    Some(v) => value = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if found {
                insert_path(&mut out, first, &rest, value);
            }
        }
        Projection(out)
    }
}

impl PartialEq for MemberData {
    fn eq(&self, other: &Self) -> bool {
        // Canonical text: equal text is equal data.
        self.0.get() == other.0.get()
    }
}

/// A guest's view of one member's data, serialized as a JSON object.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(crate) struct Projection<'a>(BTreeMap<String, Node<'a>>);

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Node<'a> {
    /// A value on a public path, as stored.
    Leaf(&'a RawValue),
    /// An object rebuilt to hold the public parts of a dotted path.
    Object(BTreeMap<String, Node<'a>>),
}

/// The members of a JSON object, unparsed; `None` for any other value (as
/// `Value::get` finds nothing in those).
fn object(raw: &RawValue) -> Option<BTreeMap<String, &RawValue>> {
    serde_json::from_str(raw.get()).ok()
}

/// As `rules::insert_path`. Where an earlier field put the whole object
/// there, that object already holds this value: nothing changes, as with the
/// parsed map.
fn insert_path<'a>(
    out: &mut BTreeMap<String, Node<'a>>,
    first: &str,
    rest: &[&str],
    value: &'a RawValue,
) {
    match rest.split_first() {
        None => {
            out.insert(first.to_owned(), Node::Leaf(value));
        }
        Some((next, tail)) => {
            let slot = out
                .entry(first.to_owned())
                .or_insert_with(|| Node::Object(BTreeMap::new()));
            if let Node::Object(inner) = slot {
                insert_path(inner, next, tail, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn rule(fields: &[&str]) -> ChannelRule {
        let mut rule = ChannelRule::default_for_unmatched();
        rule.public_fields = fields.iter().map(|f| f.to_string()).collect();
        rule
    }

    /// How the engine writes data inside a frame, stored or parsed.
    fn framed<T: Serialize>(data: T) -> String {
        #[derive(Serialize)]
        struct Out<T> {
            user: &'static str,
            data: T,
            conns: u32,
        }
        serde_json::to_string(&Out {
            user: "u1",
            data,
            conns: 1,
        })
        .unwrap()
    }

    fn samples() -> Vec<Value> {
        vec![
            json!({}),
            json!({"name": "user 17"}),
            json!({"z": 1, "a": 2, "m": {"y": [1, 2.5, -3e-7, null], "b": true}}),
            json!({"quote\"d": "tab\t and \u{1F600} and \\ and \u{7}", "ünï": "ç"}),
            json!({"n": 1.0, "big": 18446744073709551615u64, "neg": -9223372036854775808i64, "f": 0.1}),
            json!({"info": {"name": "Al", "avatar": "a.png"}, "email": "a@x"}),
        ]
    }

    #[test]
    fn writes_the_same_bytes_as_the_map() {
        for v in samples() {
            let m = map(v);
            let d = MemberData::from_map(&m);
            assert_eq!(d.raw().get(), serde_json::to_string(&m).unwrap());
            assert_eq!(framed(d.raw()), framed(&m));
        }
    }

    #[test]
    fn keys_come_out_sorted_whatever_the_input_order() {
        let m: Map<String, Value> = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        assert_eq!(
            MemberData::from_map(&m).raw().get(),
            r#"{"a":{"c":3,"d":2},"b":1}"#
        );
    }

    #[test]
    fn equal_exactly_when_the_maps_are() {
        let a: Map<String, Value> = serde_json::from_str(r#"{"b":1,"a":[1,"x"]}"#).unwrap();
        let b: Map<String, Value> = serde_json::from_str(r#"{ "a": [1, "x"], "b": 1 }"#).unwrap();
        let c: Map<String, Value> = serde_json::from_str(r#"{"a":[1,"x"],"b":2}"#).unwrap();
        assert_eq!(MemberData::from_map(&a), MemberData::from_map(&b));
        assert_ne!(MemberData::from_map(&a), MemberData::from_map(&c));
        assert_ne!(
            MemberData::from_map(&Map::new()),
            MemberData::from_map(&map(json!({"a": null})))
        );
    }

    #[test]
    fn parses_back_to_the_map() {
        for v in samples() {
            let m = map(v);
            let back: Map<String, Value> =
                serde_json::from_str(MemberData::from_map(&m).raw().get()).unwrap();
            assert_eq!(back, m);
            assert_eq!(MemberData::from_map(&m).to_map(), m);
        }
    }

    #[test]
    fn projection_matches_the_rule_on_the_map() {
        let data = map(json!({
            "name": "Al", "email": "a@x", "n": 2.5e-300,
            "info": {"avatar": "a.png", "phone": "1", "deep": {"x": 1, "y": [2]}},
            "list": [1, 2], "s": "str"
        }));
        let fields: &[&[&str]] = &[
            &[],
            &["name"],
            &["name", "info.avatar", "missing"],
            &["info.deep.x", "info.avatar", "n"],
            &["info", "info.avatar"],
            &["info.avatar", "info"],
            &["info.deep.x", "info.deep"],
            &["list.0", "s.len", "name.x", "info.deep.y.0"],
            &["", ".", "info.", ".name"],
            &["name", "name"],
        ];
        let d = MemberData::from_map(&data);
        for f in fields {
            let r = rule(f);
            assert_eq!(
                serde_json::to_string(&d.project(&r)).unwrap(),
                serde_json::to_string(&r.project(&data)).unwrap(),
                "fields {f:?}"
            );
        }
    }

    #[test]
    fn projection_of_keys_needing_escapes() {
        let data = map(json!({"a\"b": {"c\nd": "\u{1F600}"}, "é": 1}));
        let r = rule(&["a\"b.c\nd", "é"]);
        let d = MemberData::from_map(&data);
        assert_eq!(
            serde_json::to_string(&d.project(&r)).unwrap(),
            serde_json::to_string(&r.project(&data)).unwrap()
        );
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-c\"\\\\é\n]{0,4}".prop_map(Value::from),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_map_writes_the_same_bytes_and_projects_the_same(
            data in prop::collection::btree_map("[a-c]{1,2}", value(), 0..5),
            fields in prop::collection::vec("[a-c]{1,2}(\\.[a-c]{1,2}){0,2}", 0..4),
        ) {
            let data: Map<String, Value> = data.into_iter().collect();
            let d = MemberData::from_map(&data);
            prop_assert_eq!(framed(d.raw()), framed(&data));
            let r = rule(&fields.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(
                serde_json::to_string(&d.project(&r)).unwrap(),
                serde_json::to_string(&r.project(&data)).unwrap()
            );
        }
    }
}
