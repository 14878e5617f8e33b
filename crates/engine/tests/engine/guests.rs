//! Guests and the public projection of member data.

use super::*;

// ----- guests and projection -------------------------------------------------

pub(super) fn guest_cfg() -> EngineConfig {
    let mut c = cfg();
    let mut r = rule("pub:*");
    r.guests = true;
    r.public_fields = vec!["name".into(), "info.avatar".into()];
    c.rules = rules(vec![r]);
    c
}

pub(super) fn with_info(id: &str, info: Value) -> Identity {
    Identity {
        user: Some(id.into()),
        info: Some(obj(info)),
        channels: None,
    }
}

#[test]
fn guests_see_only_the_public_projection() {
    let mut d = Driver::new(guest_cfg());
    let g = d.guest();
    d.ok(g, subscribe(1, "pub:1"));
    let o = d.hello("obs");
    d.ok(o, subscribe(1, "pub:1"));
    let mut gv = Views::default();
    gv.apply_all(&d.take(g)).unwrap();
    d.clear();
    let u1 = d.hello_as(with_info("u1", json!({"avatar": "a.png", "email": "e@x"})));
    let u2 = d.hello_as(with_info("u2", json!({"avatar": "b.png"})));
    d.ok(
        u1,
        enter_with(1, "pub:1", json!({"name": "Al", "secret": 1})),
    );
    let f = d.take(g);
    assert_eq!(
        f,
        vec![json!({"t": "join", "channel": "pub:1", "seq": 1,
            "member": {"user": "u1", "data": {"name": "Al", "info": {"avatar": "a.png"}}}})]
    );
    gv.apply_all(&f).unwrap();
    let full = d.take_t(o, "join");
    assert_eq!(
        full[0]["member"]["data"],
        json!({"name": "Al", "secret": 1, "info": {"avatar": "a.png", "email": "e@x"}})
    );
    assert_eq!(full[0]["member"]["conns"], 1);
    assert!(full[0]["member"]["since"].is_string());
    d.tick(100);
    d.ok(u1, update(2, "pub:1", json!({"name": "Bo", "secret": 2})));
    let f = d.take(g);
    assert_eq!(
        f,
        vec![json!({"t": "update", "channel": "pub:1", "seq": 2,
            "member": {"user": "u1", "data": {"name": "Bo", "info": {"avatar": "a.png"}}}})]
    );
    gv.apply_all(&f).unwrap();
    d.tick(100);
    // Two changes in one window: a projected diff.
    d.ok(u1, update(3, "pub:1", json!({"name": "Cy"})));
    let f = d.take(g);
    assert_eq!(f[0]["t"], "update"); // the first change goes out at once
    gv.apply_all(&f).unwrap();
    d.ok(u2, enter_with(1, "pub:1", json!({"secret": true})));
    d.ok(u1, update(3, "pub:1", json!({"name": "Di"})));
    d.tick(50);
    let f = d.take(g);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0],
        json!({"t": "diff", "channel": "pub:1", "seq": 4,
            "joins": [{"user": "u2", "data": {"info": {"avatar": "b.png"}}}],
            "updates": [{"user": "u1", "data": {"name": "Di", "info": {"avatar": "a.png"}}}],
            "leaves": []})
    );
    gv.apply_all(&f).unwrap();
    // A fresh guest snapshot is projected too.
    let g2 = d.guest();
    d.ok(g2, subscribe(1, "pub:1"));
    let s = d.take_t(g2, "sync");
    assert_eq!(
        s[0]["members"],
        json!([
            {"user": "u1", "data": {"name": "Di", "info": {"avatar": "a.png"}}},
            {"user": "u2", "data": {"info": {"avatar": "b.png"}}}
        ])
    );
    assert_eq!(gv.channels["pub:1"].members, {
        let mut v = Views::default();
        v.apply_all(&s).unwrap();
        v.channels["pub:1"].members.clone()
    });
    // Guests count neither as members nor connections.
    assert_eq!(d.eng.occupancy("pub:1"), Some((2, 2)));
    assert_eq!(d.eng.users_present(), 3);
    // Messages reach guests, but not the sender.
    d.clear();
    d.ok(
        u1,
        json!({"t": "publish", "id": 5, "channel": "pub:1", "data": {"hi": 1}}),
    );
    let m = json!({"t": "message", "channel": "pub:1", "from": "u1", "data": {"hi": 1}});
    assert_eq!(d.take_t(g, "message"), vec![m.clone()]);
    assert_eq!(d.take_t(o, "message"), vec![m]);
    assert!(d.take_t(u1, "message").is_empty());
}
