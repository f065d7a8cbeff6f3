//! Scenario-style unit tests of the fake Gitter's rules, without HTTP.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::state::*;

const T0: u64 = 1_700_000_000_000;

/// A small world: alice (admin) and bob in `org/room`, carol outside it,
/// a private room of bob's, and the default OAuth client.
fn world() -> GitterState {
    let mut s = GitterState::new(GitterConfig {
        rate_limit: 3,
        rng_seed: Some(7),
        ..GitterConfig::default()
    });
    for name in ["alice", "bob", "carol"] {
        s.add_user(None, name, None, T0).unwrap();
    }
    s.add_room(
        None,
        "org/room",
        None,
        "topic",
        true,
        &names(&["alice", "bob"]),
        &names(&["alice"]),
        T0,
    )
    .unwrap();
    s.add_room(
        None,
        "org/secret",
        None,
        "",
        false,
        &names(&["bob"]),
        &[],
        T0,
    )
    .unwrap();
    s
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn caller(s: &mut GitterState, name: &str) -> Caller {
    s.caller_for(name).unwrap()
}

fn rid(s: &GitterState, uri: &str) -> String {
    s.room_by_uri(uri).unwrap().id.clone()
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Post `n` messages as alice one second apart, returning their ids.
fn post_many(s: &mut GitterState, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let v = s
                .post_as("alice", "org/room", &format!("m{i}"), T0 + i as u64 * 1000)
                .unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn object_ids_increase_strictly_and_carry_the_time() {
    let mut s = world();
    let a = s.new_object_id(T0);
    let b = s.new_object_id(T0);
    let c = s.new_object_id(T0 - 10_000); // clock went backwards
    assert!(a < b && b < c, "{a} {b} {c}");
    assert_eq!(a.len(), 24);
    assert_eq!(u32::from_str_radix(&a[..8], 16).unwrap() as u64, T0 / 1000);
}

#[test]
fn paging_is_oldest_first_with_before_and_after_ids() {
    let mut s = world();
    let all = post_many(&mut s, 120);
    let alice = caller(&mut s, "alice");
    let room = rid(&s, "org/room");
    let list = |s: &GitterState, q: MessageQuery| ids(&s.list_messages(&alice, &room, &q).unwrap());

    // Default: the newest 50, oldest first.
    assert_eq!(list(&s, MessageQuery::default()), all[70..].to_vec());
    // limit is clamped to 100; 0 means 50.
    assert_eq!(
        list(
            &s,
            MessageQuery {
                limit: Some(500),
                ..Default::default()
            }
        )
        .len(),
        100
    );
    assert_eq!(
        list(
            &s,
            MessageQuery {
                limit: Some(0),
                ..Default::default()
            }
        )
        .len(),
        50
    );
    // beforeId: the newest `limit` strictly older.
    let q = MessageQuery {
        before_id: Some(all[70].clone()),
        limit: Some(10),
        ..Default::default()
    };
    assert_eq!(list(&s, q), all[60..70].to_vec());
    // afterId: the oldest `limit` strictly newer.
    let q = MessageQuery {
        after_id: Some(all[5].clone()),
        limit: Some(3),
        ..Default::default()
    };
    assert_eq!(list(&s, q), all[6..9].to_vec());
    // Catch-up past the end gives an empty page.
    let q = MessageQuery {
        after_id: Some(all[119].clone()),
        ..Default::default()
    };
    assert!(list(&s, q).is_empty());
    // skip above 5000 is refused.
    let err = s
        .list_messages(
            &alice,
            &room,
            &MessageQuery {
                skip: Some(5001),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.starts_with("Skip is limited to 5000 items"));
}

#[test]
fn around_id_centres_the_window_and_marks_the_anchor() {
    let mut s = world();
    let all = post_many(&mut s, 20);
    let alice = caller(&mut s, "alice");
    let room = rid(&s, "org/room");
    let q = MessageQuery {
        around_id: Some(all[10].clone()),
        limit: Some(6),
        ..Default::default()
    };
    let page = s.list_messages(&alice, &room, &q).unwrap();
    assert_eq!(ids(&page), all[8..14].to_vec());
    let anchor: Vec<_> = page.iter().filter(|m| m.get("initial").is_some()).collect();
    assert_eq!(anchor.len(), 1);
    assert_eq!(anchor[0]["id"], all[10].as_str());
}

#[test]
fn thread_replies_stay_out_of_the_main_list_unless_asked() {
    let mut s = world();
    let parent = s.post_as("alice", "org/room", "parent", T0).unwrap();
    let pid = parent["id"].as_str().unwrap().to_string();
    let reply = s
        .reply_as("bob", "org/room", &pid, "reply", T0 + 1)
        .unwrap();
    assert_eq!(reply["parentId"], pid.as_str());
    let alice = caller(&mut s, "alice");
    let room = rid(&s, "org/room");
    let main = s
        .list_messages(&alice, &room, &MessageQuery::default())
        .unwrap();
    assert_eq!(ids(&main), vec![pid.clone()]);
    assert_eq!(main[0]["threadMessageCount"], 1);
    assert_eq!(main[0]["v"], 2, "each reply saves the parent");
    let with = MessageQuery {
        include_threads: Some(true),
        ..Default::default()
    };
    assert_eq!(s.list_messages(&alice, &room, &with).unwrap().len(), 2);
    let thread = s
        .thread(&alice, &room, &pid, &MessageQuery::default())
        .unwrap();
    assert_eq!(thread.len(), 1);
    // A bad parent id.
    let bob = caller(&mut s, "bob");
    let err = s
        .post_message(&bob, &room, Some("x"), false, Some("nope"), T0)
        .unwrap_err();
    assert_eq!(err.message, "parentId must be a valid message ID");
}

#[test]
fn message_shape_leaves_out_unset_fields() {
    let mut s = world();
    let m = s
        .post_as("alice", "org/room", "it's <fine>", T0 + 123)
        .unwrap();
    assert_eq!(m["html"], "it&#39;s &lt;fine&gt;");
    assert_eq!(m["sent"], "2023-11-14T22:13:20.123Z");
    assert_eq!(m["meta"], serde_json::json!([]));
    assert_eq!(m["v"], 1);
    assert_eq!(m["unread"], false, "the sender's own message is read");
    for absent in ["editedAt", "parentId", "threadMessageCount", "status"] {
        assert!(m.get(absent).is_none(), "{absent} must be absent, not null");
    }
    let st = s
        .post_status_as("alice", "org/room", "@alice waves", T0)
        .unwrap();
    assert_eq!(st["status"], true);
}

#[test]
fn sending_validates_text_and_membership() {
    let mut s = world();
    let room = rid(&s, "org/room");
    let alice = caller(&mut s, "alice");
    let carol = caller(&mut s, "carol");
    let e = s
        .post_message(&alice, &room, None, false, None, T0)
        .unwrap_err();
    assert_eq!((e.status, e.message.as_str()), (400, "Text is required"));
    let long = "x".repeat(MAX_TEXT_CHARS + 1);
    let e = s
        .post_message(&alice, &room, Some(&long), false, None, T0)
        .unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (400, "Message exceeds maximum size")
    );
    assert!(
        s.post_message(
            &alice,
            &room,
            Some(&"x".repeat(MAX_TEXT_CHARS)),
            false,
            None,
            T0
        )
        .is_ok()
    );
    let e = s
        .post_message(&carol, &room, Some("hi"), false, None, T0)
        .unwrap_err();
    assert_eq!(e.status, 403, "non-members cannot write");
    let e = s
        .post_message(&alice, "zzz", Some("hi"), false, None, T0)
        .unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (400, "Invalid MongoId: zzz")
    );
}

#[test]
fn edits_are_author_only_within_ten_minutes() {
    let mut s = world();
    let room = rid(&s, "org/room");
    let m = s.post_as("alice", "org/room", "first", T0).unwrap();
    let mid = m["id"].as_str().unwrap().to_string();
    let bob = caller(&mut s, "bob");
    let e = s
        .edit_message(&bob, &room, &mid, Some("hijack"), T0 + 1)
        .unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (403, "You can only edit your own messages")
    );
    let edited = s
        .edit_as("alice", "org/room", &mid, "second", T0 + 600_000)
        .unwrap();
    assert_eq!(edited["text"], "second");
    assert_eq!(edited["v"], 2);
    assert_eq!(edited["editedAt"], crate::util::iso_ms(T0 + 600_000));
    let e = s
        .edit_as("alice", "org/room", &mid, "late", T0 + 600_001)
        .unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (400, "You can no longer edit this message")
    );
}

#[test]
fn deleting_a_parent_with_replies_blanks_it() {
    let mut s = world();
    let room = rid(&s, "org/room");
    let p = s.post_as("alice", "org/room", "parent", T0).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.reply_as("bob", "org/room", &p, "reply", T0).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = s.delete_as("carol", "org/room", &p).unwrap_err();
    assert_eq!(e.status, 403, "carol may not even read-write here");
    // Bob is neither author nor admin of the parent.
    let e = s.delete_as("bob", "org/room", &p).unwrap_err();
    assert_eq!(e.status, 403);
    s.delete_as("alice", "org/room", &p).unwrap();
    let alice = caller(&mut s, "alice");
    let parent = s.get_message(&alice, &room, &p).unwrap();
    assert_eq!(
        (parent["text"].as_str(), parent["html"].as_str()),
        (Some(""), Some(""))
    );
    // Deleting the reply (admin may) decrements the parent's count.
    s.delete_as("alice", "org/room", &r).unwrap();
    let parent = s.get_message(&alice, &room, &p).unwrap();
    assert!(parent.get("threadMessageCount").is_none());
    assert_eq!(s.get_message(&alice, &room, &r).unwrap_err().status, 404);
}

#[test]
fn rate_limit_is_a_fixed_window_per_user_and_client() {
    let mut s = world();
    let alice = caller(&mut s, "alice");
    for left in [2, 1, 0] {
        let info = s.rate_check(&alice, T0).unwrap();
        assert_eq!(
            (info.limit, info.remaining, info.reset_ms),
            (3, left, T0 + 60_000)
        );
    }
    let over = s.rate_check(&alice, T0 + 59_999).unwrap_err();
    assert_eq!((over.remaining, over.reset_ms), (0, T0 + 60_000));
    // Another OAuth client of the same user has its own bucket.
    let mut other = alice.clone();
    other.client_id = "other-app".into();
    assert!(s.rate_check(&other, T0).is_ok());
    // The window expires.
    let fresh = s.rate_check(&alice, T0 + 60_000).unwrap();
    assert_eq!((fresh.remaining, fresh.reset_ms), (2, T0 + 120_000));
}

fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn oauth_codes_are_single_use_and_tokens_are_per_user_and_client() {
    let mut s = world();
    let cfg = s.config.clone();
    assert_eq!(
        s.check_authorize(Some(&cfg.client_id), Some("http://evil/cb"), Some("code"))
            .unwrap_err()
            .0,
        401
    );
    s.check_authorize(Some(&cfg.client_id), Some(&cfg.redirect_uri), Some("code"))
        .unwrap();
    let code = s.issue_code("bob").unwrap();
    assert_eq!(code.len(), 40);
    let good = [
        ("client_id", cfg.client_id.as_str()),
        ("client_secret", cfg.client_secret.as_str()),
        ("grant_type", "authorization_code"),
        ("redirect_uri", cfg.redirect_uri.as_str()),
        ("code", code.as_str()),
    ];
    // Wrong secret: 401 and the code survives.
    let mut bad = form(&good);
    bad.insert("client_secret".into(), "wrong".into());
    assert_eq!(s.exchange_code(&bad).unwrap_err().status, 401);
    let token = s.exchange_code(&form(&good)).unwrap();
    assert_eq!(token.len(), 40);
    let again = s.exchange_code(&form(&good)).unwrap_err();
    assert_eq!(again.status, 403);
    assert_eq!(again.body()["error"], "invalid_grant");
    assert_eq!(
        again.body()["error_description"],
        "Invalid authorization code"
    );
    // Authorizing again gives the same token.
    let code2 = s.issue_code("bob").unwrap();
    let mut f = form(&good);
    f.insert("code".into(), code2);
    assert_eq!(s.exchange_code(&f).unwrap(), token);
    assert_eq!(
        s.authenticate(Some(&token)).unwrap().user_id,
        s.user_by_username("bob").unwrap().id
    );
}

#[test]
fn resolving_rooms_never_joins() {
    let mut s = world();
    let carol = caller(&mut s, "carol");
    let room = s.resolve_room(&carol, Some("ORG/Room"), T0).unwrap();
    assert_eq!(room["uri"], "org/room");
    assert_eq!(room["roomMember"], false);
    assert_eq!(
        s.resolve_room(&carol, Some("org/secret"), T0)
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        s.resolve_room(&carol, Some("nope/nope"), T0)
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        s.resolve_room(&carol, Some("carol"), T0)
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(s.resolve_room(&carol, None, T0).unwrap_err().status, 400);
    let dm = s.resolve_room(&carol, Some("alice"), T0).unwrap();
    assert_eq!(dm["oneToOne"], true);
    assert!(dm.get("uri").is_none());
    assert_eq!(dm["user"]["username"], "alice");
    // Joining: bad id 400, private 403, twice fine.
    assert_eq!(
        s.join_room(&carol, "me", Some("x"), T0).unwrap_err().status,
        400
    );
    let secret = rid(&s, "org/secret");
    assert_eq!(
        s.join_room(&carol, "me", Some(&secret), T0)
            .unwrap_err()
            .status,
        403
    );
    let id = room["id"].as_str().unwrap().to_string();
    s.join_room(&carol, "me", Some(&id), T0).unwrap();
    let again = s.join_room(&carol, "me", Some(&id), T0).unwrap();
    assert_eq!(again["userCount"], 3);
}

#[test]
fn leaving_and_member_lists() {
    let mut s = world();
    let room = rid(&s, "org/room");
    let bob = caller(&mut s, "bob");
    let carol = caller(&mut s, "carol");
    let alice_id = s.user_by_username("alice").unwrap().id.clone();
    assert_eq!(
        s.remove_user(&bob, &room, &alice_id, false)
            .unwrap_err()
            .status,
        403
    );
    assert_eq!(
        s.remove_user(&bob, &room, &carol.user_id, false)
            .unwrap_err()
            .status,
        404
    );
    let users = s.room_users(&bob, &room, None, None, None).unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["role"], "admin");
    assert!(users[1].get("role").is_none());
    assert_eq!(
        s.remove_user(&bob, &room, "bob", true).unwrap()["success"],
        true
    );
    assert!(!s.is_member(&room, &bob.user_id));
}

#[test]
fn member_list_pages_default_30_max_100() {
    let mut s = world();
    let mut members = names(&["alice"]);
    for i in 0..150 {
        let n = format!("u{i}");
        s.add_user(None, &n, None, T0).unwrap();
        members.push(n);
    }
    s.add_room(None, "big/room", None, "", true, &members, &[], T0)
        .unwrap();
    let alice = caller(&mut s, "alice");
    let room = rid(&s, "big/room");
    assert_eq!(
        s.room_users(&alice, &room, None, None, None).unwrap().len(),
        30
    );
    assert_eq!(
        s.room_users(&alice, &room, None, Some(1000), None)
            .unwrap()
            .len(),
        100
    );
    let tail = s
        .room_users(&alice, &room, Some(140), Some(100), None)
        .unwrap();
    assert_eq!(tail.len(), 11);
}

#[test]
fn a_room_where_a_non_member_is_mentioned_is_listed_as_not_joined() {
    let mut s = world();
    s.post_as("alice", "org/room", "hello @bob and @carol", T0)
        .unwrap();
    let carol = caller(&mut s, "carol");
    // Carol is not a member but was mentioned: the room shows up for her (§3.2), and the
    // bridge must not open a portal for it.
    let rooms = s.rooms_for(&carol, "me").unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0]["roomMember"], false);
    assert_eq!(rooms[0]["mentions"], 1);
}

#[test]
fn streams_get_new_messages_until_dropped_or_revoked() {
    let mut s = world();
    let room = rid(&s, "org/room");
    let bob = caller(&mut s, "bob");
    let (_, mut rx) = s.open_stream(Some(&bob.token), &room).unwrap();
    s.post_as("alice", "org/room", "ping", T0).unwrap();
    let line = rx.try_recv().unwrap();
    assert!(line.ends_with('\n'));
    let v: Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(v["text"], "ping");
    assert!(
        v.get("unread").is_none(),
        "realtime payloads carry no unread"
    );
    // Edits are not streamed.
    let mid = v["id"].as_str().unwrap().to_string();
    s.edit_as("alice", "org/room", &mid, "pong", T0).unwrap();
    assert!(rx.try_recv().is_err());
    assert_eq!(s.drop_streams(Some(&room)), 1);
    assert!(rx.try_recv().is_err() && rx.is_closed());
    let (_, mut rx2) = s.open_stream(Some(&bob.token), &room).unwrap();
    assert!(s.revoke_token(&bob.token));
    assert!(rx2.try_recv().is_err() && rx2.is_closed());
    assert_eq!(
        s.open_stream(Some(&bob.token), &room).unwrap_err().status,
        401
    );
    assert_eq!(s.authenticate(Some(&bob.token)).unwrap_err().status, 401);
}

#[test]
fn raw_lines_reach_the_room_streams_and_readers_are_named() {
    let mut s = world();
    let room = rid(&s, "org/room");
    assert_eq!(s.stream_raw_line(&room, "not json"), 0);
    let alice = caller(&mut s, "alice");
    let bob = caller(&mut s, "bob");
    let (_, mut rx_a) = s.open_stream(Some(&alice.token), &room).unwrap();
    let (_, mut rx_b) = s.open_stream(Some(&bob.token), &room).unwrap();
    assert_eq!(s.stream_readers(&room), names(&["alice", "bob"]));
    assert_eq!(s.stream_raw_line(&room, "not json"), 2);
    assert_eq!(rx_a.try_recv().unwrap(), "not json\n");
    assert_eq!(rx_b.try_recv().unwrap(), "not json\n");
    assert!(s.stream_readers(&rid(&s, "org/secret")).is_empty());
    assert!(s.revoke_token(&alice.token));
    assert_eq!(s.stream_readers(&room), names(&["bob"]));
}

#[test]
fn injected_faults_count_down_and_expire() {
    let mut s = world();
    assert_eq!(s.pending_failures(), 0);
    s.fail_next(2, 503);
    assert_eq!(s.pending_failures(), 2);
    assert_eq!(s.take_fault(T0), Some(503));
    assert_eq!(s.pending_failures(), 1);
    assert_eq!(s.take_fault(T0), Some(503));
    assert_eq!(s.take_fault(T0), None);
    s.fail_until(T0 + 1000, 429);
    assert_eq!(s.take_fault(T0 + 999), Some(429));
    assert_eq!(s.take_fault(T0 + 1000), None);
    s.set_delay(Duration::from_millis(5));
    s.clear_faults();
    assert!(s.delay().is_zero());
}

#[test]
fn the_default_seed_loads() {
    let seed =
        GitterSeed::from_toml(include_str!("../../../fixtures/sim/gitter-seed.toml")).unwrap();
    let mut s = GitterState::new(GitterConfig::default());
    s.apply_seed(&seed, T0).unwrap();
    let big = s.room_by_uri("rustlang/big").unwrap();
    assert!(big.members.len() > 100);
    let alice = s
        .authenticate(Some("a11ce0000000000000000000000000000000a11c"))
        .unwrap();
    let rooms = s.rooms_for(&alice, "me").unwrap();
    assert!(
        rooms
            .iter()
            .any(|r| r["oneToOne"] == true && r.get("uri").is_none())
    );
    assert!(GitterSeed::from_toml("[[users]]\nname = 'x'").is_err());
}

#[test]
fn chaos_faults_count_down_expire_and_clear() {
    use crate::faults::Budget;
    let mut s = world();
    s.lose_send_answers(2);
    assert!(s.take_lost_send() && s.take_lost_send());
    assert!(!s.take_lost_send());
    s.flap_streams(Budget::Next(1));
    assert!(s.take_flap(T0));
    assert!(!s.take_flap(T0));
    s.flap_streams(Budget::UntilMs(T0 + 100));
    assert!(s.take_flap(T0 + 99));
    assert!(!s.take_flap(T0 + 100));
    s.silence_streams_until(T0 + 250);
    assert_eq!(s.silence_left(T0 + 50), Some(Duration::from_millis(200)));
    assert_eq!(s.silence_left(T0 + 250), None);
    // Each hostile kind has its own budget; a huge body goes before a drip.
    s.set_hostile(
        Hostile::HugeBody {
            bytes: 10,
            status: 500,
        },
        Budget::Next(1),
    );
    s.set_hostile(
        Hostile::SlowDrip {
            chunk_bytes: 0,
            interval_ms: 5,
        },
        Budget::Next(1),
    );
    s.set_hostile(Hostile::EndlessLine, Budget::UntilMs(T0 + 10));
    assert_eq!(
        s.take_hostile_answer(T0),
        Some(Hostile::HugeBody {
            bytes: 10,
            status: 500
        })
    );
    assert_eq!(
        s.take_hostile_answer(T0),
        Some(Hostile::SlowDrip {
            chunk_bytes: 1,
            interval_ms: 5
        }),
        "a zero chunk would never end: one byte"
    );
    assert_eq!(s.take_hostile_answer(T0), None);
    assert!(s.take_endless_line(T0 + 9));
    s.lose_send_answers(1);
    s.silence_streams_until(T0 + 1000);
    s.clear_faults();
    assert!(!s.take_lost_send());
    assert!(!s.take_endless_line(T0));
    assert_eq!(s.silence_left(T0), None);
}

#[test]
fn hostile_controls_parse_with_their_defaults() {
    let h: Hostile = serde_json::from_str(r#"{"kind":"huge_body"}"#).unwrap();
    assert_eq!(
        h,
        Hostile::HugeBody {
            bytes: 1 << 30,
            status: 200
        }
    );
    let h: Hostile = serde_json::from_str(r#"{"kind":"slow_drip","interval_ms":7}"#).unwrap();
    assert_eq!(
        h,
        Hostile::SlowDrip {
            chunk_bytes: 1,
            interval_ms: 7
        }
    );
    let h: Hostile = serde_json::from_str(r#"{"kind":"endless_line"}"#).unwrap();
    assert_eq!(h, Hostile::EndlessLine);
}
