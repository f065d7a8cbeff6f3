//! Scenario-style unit tests of the fake homeserver's rules, without HTTP.

use serde_json::{Value, json};

use super::state::*;

const T0: u64 = 1_700_000_000_000;
const AS_TOKEN: &str = "as_token_test";

fn registration() -> Registration {
    Registration::from_yaml(
        r##"
id: gitter
url: "http://127.0.0.1:9"
as_token: "as_token_test"
hs_token: "hs_token_test"
sender_localpart: "_gitter_bot"
rate_limited: false
namespaces:
  users: [{exclusive: true, regex: "@_gitter_.*:localhost"}]
  aliases: [{exclusive: true, regex: "#_gitter_.*:localhost"}]
  rooms: []
"##,
    )
    .unwrap()
}

fn hs() -> HsState {
    let mut cfg = HsConfig::new("localhost", registration());
    cfg.rng_seed = Some(1);
    HsState::new(cfg).unwrap()
}

const BOT: &str = "@_gitter_bot:localhost";

fn as_req(user: &str) -> Requester {
    Requester::AppService {
        user_id: user.into(),
    }
}

fn register_ghost(s: &mut HsState, local: &str) -> String {
    let v = s
        .register(Some(AS_TOKEN), &json!({"type": "m.login.application_service", "username": local, "inhibit_login": true}))
        .unwrap();
    v["user_id"].as_str().unwrap().to_string()
}

/// `createRoom` as `creator`: through the AS for the bot and its ghosts,
/// as a user otherwise.
fn create(s: &mut HsState, creator: &str, body: Value) -> Result<String, MatrixError> {
    let req: CreateRoom = serde_json::from_value(body).unwrap();
    let requester = if s.in_as_namespace(creator) {
        as_req(creator)
    } else {
        Requester::User {
            user_id: creator.into(),
            device_id: "D".into(),
        }
    };
    s.create_room(&requester, &req, T0)
}

/// Drain everything queued for the AS, acknowledging each transaction.
fn drain(s: &mut HsState) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(t) = s.next_transaction() {
        s.record_push(&t.txn_id, true);
        out.extend(t.events);
    }
    out
}

#[test]
fn as_token_auth_and_masquerading_follow_synapse() {
    let mut s = hs();
    let e = s.authenticate(None, None).unwrap_err();
    assert_eq!((e.status, e.errcode.as_str()), (401, "M_MISSING_TOKEN"));
    let e = s.authenticate(Some("wrong"), None).unwrap_err();
    assert_eq!((e.status, e.errcode.as_str()), (401, "M_UNKNOWN_TOKEN"));
    assert_eq!(s.authenticate(Some(AS_TOKEN), None).unwrap(), as_req(BOT));
    let e = s
        .authenticate(Some(AS_TOKEN), Some("@someone:localhost"))
        .unwrap_err();
    assert_eq!((e.status, e.errcode.as_str()), (403, "M_FORBIDDEN"));
    assert!(e.error.contains("cannot masquerade as this user"));
    let e = s
        .authenticate(Some(AS_TOKEN), Some("@_gitter_alice:localhost"))
        .unwrap_err();
    assert!(e.error.contains("has not registered this user"));
    let alice = register_ghost(&mut s, "_gitter_alice");
    assert_eq!(
        s.authenticate(Some(AS_TOKEN), Some(&alice)).unwrap(),
        as_req(&alice)
    );
    assert_eq!(s.whoami(&as_req(&alice))["user_id"], alice.as_str());
}

#[test]
fn registration_rules() {
    let mut s = hs();
    let body = json!({"type": "m.login.application_service", "username": "_gitter_bob", "inhibit_login": true});
    let v = s.register(Some(AS_TOKEN), &body).unwrap();
    assert_eq!(
        v,
        json!({"user_id": "@_gitter_bob:localhost", "home_server": "localhost"})
    );
    let e = s.register(Some(AS_TOKEN), &body).unwrap_err();
    assert_eq!((e.status, e.errcode.as_str()), (400, "M_USER_IN_USE"));
    let outside = json!({"type": "m.login.application_service", "username": "bob"});
    assert_eq!(
        s.register(Some(AS_TOKEN), &outside).unwrap_err().errcode,
        "M_EXCLUSIVE"
    );
    let e = s.register(None, &body).unwrap_err();
    assert_eq!(e.errcode, "M_MISSING_TOKEN");
    // Without inhibit_login the ghost gets a token.
    let v = s
        .register(
            Some(AS_TOKEN),
            &json!({"type": "m.login.application_service", "username": "_gitter_c"}),
        )
        .unwrap();
    assert!(v["access_token"].is_string());
    // Humans: `_` prefix refused before the namespace check (measured).
    assert_eq!(
        s.register_human("_gitter_evil", None).unwrap_err().error,
        "User ID may not begin with _"
    );
    let (uid, token) = s.register_human("Human", None).unwrap();
    assert_eq!(uid, "@human:localhost");
    assert_eq!(s.authenticate(Some(&token), None).unwrap().user_id(), uid);
    // Over HTTP, open registration asks for the dummy stage first.
    let e = s.register(None, &json!({"username": "x"})).unwrap_err();
    assert_eq!(e.status, 401);
    assert!(e.extra.contains_key("flows"));
}

#[test]
fn v12_room_ids_have_no_server_part() {
    let mut s = hs();
    let rid = create(&mut s, BOT, json!({"preset": "private_chat"})).unwrap();
    assert!(rid.starts_with('!') && !rid.contains(':'), "{rid}");
    assert_eq!(rid.len(), 44);
    let room = s.room_info(&rid).unwrap();
    assert_eq!(room.events[0].kind, "m.room.create");
    assert_eq!(
        room.events[0].event_id[1..],
        rid[1..],
        "v12 room id is the create event's hash"
    );
    assert!(room.events[0].content.get("creator").is_none());
    let old = create(&mut s, BOT, json!({"room_version": "10"})).unwrap();
    assert!(old.ends_with(":localhost"));
}

#[test]
fn creator_in_power_level_override_is_refused_after_making_an_orphan_room() {
    let mut s = hs();
    let alice = register_ghost(&mut s, "_gitter_alice");
    let body = json!({
        "preset": "private_chat",
        "power_level_content_override": {"users": {alice.clone(): 100, BOT: 100}}
    });
    let e = create(&mut s, &alice, body).unwrap_err();
    assert_eq!((e.status, e.errcode.as_str()), (400, "M_UNKNOWN"));
    assert_eq!(
        e.error,
        format!("Creator user {alice} must not appear in content.users")
    );
    // Like Synapse: the room exists with its create event and the creator's join,
    // and the AS was told about both.
    let orphans = s.rooms_of(&alice);
    assert_eq!(orphans.len(), 1);
    let kinds: Vec<String> = drain(&mut s)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, vec!["m.room.create", "m.room.member"]);
    // Listing only other users is fine.
    let ok = json!({"power_level_content_override": {"users": {BOT: 100}}});
    assert!(create(&mut s, &alice, ok).is_ok());
}

#[test]
fn joining_needs_an_invite_and_creators_may_kick() {
    let mut s = hs();
    let (human, _) = s.register_human("human", None).unwrap();
    let (other, _) = s.register_human("other", None).unwrap();
    let rid = create(
        &mut s,
        BOT,
        json!({"preset": "private_chat", "invite": [human.clone()]}),
    )
    .unwrap();
    let e = s.join(&other, &rid, T0).unwrap_err();
    assert_eq!(e.error, "You are not invited to this room.");
    s.join(&human, &rid, T0).unwrap();
    // The human (power 0) cannot kick; the v12 creator can.
    s.invite(BOT, &rid, &other, T0).unwrap();
    assert_eq!(
        s.kick(&human, &rid, &other, None, T0).unwrap_err().status,
        403
    );
    s.kick(BOT, &rid, &human, Some("bye"), T0).unwrap();
    assert_eq!(s.room_info(&rid).unwrap().membership(&human), Some("leave"));
    // A retried kick (same kicker, same reason) is answered with the existing event, like
    // Synapse; another reason is a new kick of someone who is not there.
    let events = s.room_info(&rid).unwrap().events.len();
    s.kick(BOT, &rid, &human, Some("bye"), T0).unwrap();
    assert_eq!(s.room_info(&rid).unwrap().events.len(), events);
    assert_eq!(
        s.kick(BOT, &rid, &human, Some("again"), T0)
            .unwrap_err()
            .status,
        403
    );
    // The same for a repeated leave; a user who was never in the room cannot leave it.
    s.leave(&other, &rid, T0).unwrap();
    let events = s.room_info(&rid).unwrap().events.len();
    s.leave(&other, &rid, T0).unwrap();
    assert_eq!(s.room_info(&rid).unwrap().events.len(), events);
    let (stranger, _) = s.register_human("stranger", None).unwrap();
    assert_eq!(s.leave(&stranger, &rid, T0).unwrap_err().status, 403);
    // Public rooms need no invite.
    let public = create(&mut s, BOT, json!({"preset": "public_chat"})).unwrap();
    s.join(&other, &public, T0).unwrap();
    // Sending requires being joined.
    let e = s
        .send(
            &Requester::User {
                user_id: human.clone(),
                device_id: "D".into(),
            },
            "/p1",
            &rid,
            "m.room.message",
            json!({"body": "x"}),
            None,
            T0,
        )
        .unwrap_err();
    assert_eq!(e.status, 403);
}

#[test]
fn send_txn_ids_are_cached_per_appservice_like_synapse() {
    let mut s = hs();
    let alice = register_ghost(&mut s, "_gitter_alice");
    let bob = register_ghost(&mut s, "_gitter_bob");
    let rid = create(&mut s, BOT, json!({"preset": "public_chat"})).unwrap();
    s.join(&alice, &rid, T0).unwrap();
    s.join(&bob, &rid, T0).unwrap();
    let path = format!("/_matrix/client/v3/rooms/{rid}/send/m.room.message/t1");
    let content = json!({"msgtype": "m.text", "body": "hi"});
    let a = s
        .send(
            &as_req(&alice),
            &path,
            &rid,
            "m.room.message",
            content.clone(),
            Some(1_600_000_000_000),
            T0,
        )
        .unwrap();
    let again = s
        .send(
            &as_req(&alice),
            &path,
            &rid,
            "m.room.message",
            content.clone(),
            None,
            T0,
        )
        .unwrap();
    assert_eq!(a, again);
    // Synapse keys the cache on (path, AS id): another ghost reusing the txn
    // id in the same room gets the first event back and sends nothing.
    let other_ghost = s
        .send(
            &as_req(&bob),
            &path,
            &rid,
            "m.room.message",
            content.clone(),
            None,
            T0,
        )
        .unwrap();
    assert_eq!(a, other_ghost);
    let msgs: Vec<_> = s
        .room_info(&rid)
        .unwrap()
        .events
        .iter()
        .filter(|e| e.kind == "m.room.message")
        .cloned()
        .collect();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0].origin_server_ts, 1_600_000_000_000,
        "?ts= massaging"
    );
    let path2 = path.replace("/t1", "/t2");
    assert_ne!(
        s.send(
            &as_req(&bob),
            &path2,
            &rid,
            "m.room.message",
            content,
            None,
            T0
        )
        .unwrap(),
        a
    );
}

#[test]
fn transactions_are_retried_unchanged_and_capped_at_100_events() {
    let mut s = hs();
    let rid = create(&mut s, BOT, json!({"preset": "public_chat"})).unwrap();
    for i in 0..150 {
        let path = format!("/x/{i}");
        s.send(
            &as_req(BOT),
            &path,
            &rid,
            "m.room.message",
            json!({"msgtype": "m.text", "body": i.to_string()}),
            None,
            T0,
        )
        .unwrap();
    }
    let first = s.next_transaction().unwrap();
    assert_eq!(first.txn_id, "1");
    assert_eq!(first.events.len(), MAX_EVENTS_PER_TXN);
    s.record_push("1", false);
    assert_eq!(
        s.next_transaction().unwrap(),
        first,
        "a retry has the same id and events"
    );
    s.record_push("1", true);
    let second = s.next_transaction().unwrap();
    assert_eq!(second.txn_id, "2");
    assert_eq!(second.events.len(), s.pending_events());
    s.record_push("2", true);
    assert!(s.next_transaction().is_none());
    assert_eq!(s.delivered().len(), 2);
    let body = s.transaction_body(&first);
    assert!(body["events"].is_array());
    assert_eq!(first.events[0]["user_id"], first.events[0]["sender"]);
}

#[test]
fn the_as_only_hears_about_rooms_it_is_interested_in() {
    let mut s = hs();
    drain(&mut s);
    let (human, _) = s.register_human("human", None).unwrap();
    let (friend, _) = s.register_human("friend", None).unwrap();
    let private = create(&mut s, &human, json!({"invite": [friend.clone()]})).unwrap();
    assert!(drain(&mut s).is_empty(), "a humans-only room is not pushed");
    // A DM with the bot: the invite names the bot, so it is pushed, and so is
    // everything after the bot joins.
    let dm = create(
        &mut s,
        &human,
        json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [BOT]}),
    )
    .unwrap();
    let events = drain(&mut s);
    let invite = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == BOT)
        .unwrap();
    assert_eq!(invite["content"]["is_direct"], true);
    s.join(BOT, &dm, T0).unwrap();
    let hu = Requester::User {
        user_id: human.clone(),
        device_id: "D".into(),
    };
    s.send(
        &hu,
        "/a",
        &dm,
        "m.room.message",
        json!({"msgtype": "m.text", "body": "login"}),
        None,
        T0,
    )
    .unwrap();
    let events = drain(&mut s);
    assert!(events.iter().any(|e| e["content"]["body"] == "login"));
    s.send(
        &hu,
        "/b",
        &private,
        "m.room.message",
        json!({"body": "secret"}),
        None,
        T0,
    )
    .unwrap();
    assert!(drain(&mut s).is_empty());
}

#[test]
fn humans_see_what_the_bot_says_and_profile_changes_show_up() {
    let mut s = hs();
    let (human, _) = s.register_human("human", None).unwrap();
    let dm = create(
        &mut s,
        &human,
        json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [BOT]}),
    )
    .unwrap();
    // Before the bot joins it sees only its invite.
    let seen = s.timeline(BOT, &dm);
    assert_eq!(seen.len(), 1);
    s.join(BOT, &dm, T0).unwrap();
    s.send(
        &as_req(BOT),
        "/n",
        &dm,
        "m.room.message",
        json!({"msgtype": "m.notice", "body": "Hello! Send login"}),
        None,
        T0,
    )
    .unwrap();
    let notices: Vec<_> = s
        .timeline(&human, &dm)
        .into_iter()
        .filter(|e| e.msgtype.as_deref() == Some("m.notice"))
        .collect();
    assert_eq!(notices[0].sender, BOT);
    assert_eq!(notices[0].body.as_deref(), Some("Hello! Send login"));
    // A displayname change emits a member event in every joined room.
    s.set_profile(&as_req(BOT), BOT, "displayname", Some("Gitter bridge"), T0)
        .unwrap();
    let last = s.timeline(&human, &dm).pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.content["displayname"].as_str()),
        ("m.room.member", Some("Gitter bridge"))
    );
    let e = s
        .set_profile(&as_req(BOT), &human, "displayname", Some("x"), T0)
        .unwrap_err();
    assert_eq!(e.status, 403);
    // After leaving, the human no longer sees new events.
    s.leave(&human, &dm, T0).unwrap();
    s.send(
        &as_req(BOT),
        "/n2",
        &dm,
        "m.room.message",
        json!({"msgtype": "m.notice", "body": "bye"}),
        None,
        T0,
    )
    .unwrap();
    assert!(
        !s.timeline(&human, &dm)
            .iter()
            .any(|e| e.body.as_deref() == Some("bye"))
    );
}

#[test]
fn redaction_rules() {
    let mut s = hs();
    let (human, _) = s.register_human("human", None).unwrap();
    let rid = create(&mut s, BOT, json!({"preset": "public_chat"})).unwrap();
    s.join(&human, &rid, T0).unwrap();
    let ev = s
        .send(
            &as_req(BOT),
            "/m",
            &rid,
            "m.room.message",
            json!({"body": "oops"}),
            None,
            T0,
        )
        .unwrap();
    let hu = Requester::User {
        user_id: human.clone(),
        device_id: "D".into(),
    };
    assert_eq!(
        s.redact(&hu, "/r1", &rid, &ev, None, T0)
            .unwrap_err()
            .status,
        403
    );
    let red = s
        .redact(&as_req(BOT), "/r2", &rid, &ev, Some("spam"), T0)
        .unwrap();
    assert_eq!(
        s.redact(&as_req(BOT), "/r2", &rid, &ev, Some("spam"), T0)
            .unwrap(),
        red
    );
    let seen = s.timeline(&human, &rid);
    assert!(
        seen.iter()
            .any(|e| e.event_id == ev && e.redacted && e.body.is_none())
    );
    assert_eq!(
        s.redact(&as_req(BOT), "/r3", &rid, "$nope", None, T0)
            .unwrap_err()
            .status,
        404
    );
}

#[test]
fn relations_are_checked_and_bundled_like_synapse() {
    let mut s = hs();
    let (human, _) = s.register_human("human", None).unwrap();
    let rid = create(&mut s, BOT, json!({"preset": "public_chat"})).unwrap();
    let other = create(&mut s, BOT, json!({"preset": "public_chat"})).unwrap();
    s.join(&human, &rid, T0).unwrap();
    let mut n = 0;
    let mut send = |s: &mut HsState, room: &str, content: Value| {
        n += 1;
        s.send(
            &as_req(BOT),
            &format!("/t{n}"),
            room,
            "m.room.message",
            content,
            None,
            T0,
        )
    };
    let thread = |target: &str| json!({"rel_type": "m.thread", "event_id": target});
    let root = send(&mut s, &rid, json!({"body": "root"})).unwrap();
    let elsewhere = send(&mut s, &other, json!({"body": "elsewhere"})).unwrap();
    let reply = send(
        &mut s,
        &rid,
        json!({"body": "r1", "m.relates_to": thread(&root)}),
    )
    .unwrap();
    send(
        &mut s,
        &rid,
        json!({"body": "r2", "m.relates_to": thread(&root)}),
    )
    .unwrap();
    let edit = send(
        &mut s,
        &rid,
        json!({"body": "* root!", "m.new_content": {"body": "root!"},
               "m.relates_to": {"rel_type": "m.replace", "event_id": root}}),
    )
    .unwrap();
    for (target, why) in [
        (
            "$unknown".to_owned(),
            "Can't send relation to unknown event",
        ),
        (elsewhere, "Relations must be in the same room"),
        (reply, "Cannot start threads from an event with a relation"),
    ] {
        let e = send(
            &mut s,
            &rid,
            json!({"body": "x", "m.relates_to": thread(&target)}),
        )
        .unwrap_err();
        assert_eq!((e.status, e.error.as_str()), (400, why));
    }
    // A reply alone is no relation to the server.
    send(
        &mut s,
        &rid,
        json!({"body": "y", "m.relates_to": {"m.in_reply_to": {"event_id": "$unknown"}}}),
    )
    .unwrap();
    let got = s.get_event(&human, &rid, &root, T0).unwrap();
    let relations = &got["unsigned"]["m.relations"];
    assert_eq!(relations["m.thread"]["count"], 2);
    assert_eq!(
        relations["m.thread"]["latest_event"]["content"]["body"],
        "r2"
    );
    assert_eq!(relations["m.thread"]["current_user_participated"], false);
    assert_eq!(relations["m.replace"]["event_id"], edit.as_str());
    // A redacted reply no longer counts.
    s.redact(&as_req(BOT), "/red", &rid, &edit, None, T0)
        .unwrap();
    let got = s.get_event(&human, &rid, &root, T0).unwrap();
    assert!(got["unsigned"]["m.relations"].get("m.replace").is_none());
}

#[test]
fn injected_cs_faults() {
    let mut s = hs();
    s.fail_cs_next(1, 429);
    let e = s.take_cs_fault(T0).unwrap();
    assert_eq!((e.status, e.errcode.as_str()), (429, "M_LIMIT_EXCEEDED"));
    assert!(e.extra.contains_key("retry_after_ms"));
    assert!(s.take_cs_fault(T0).is_none());
    s.fail_cs_until(T0 + 10, 502);
    assert_eq!(s.take_cs_fault(T0).unwrap().status, 502);
    assert!(s.take_cs_fault(T0 + 10).is_none());
    s.fail_push_next(2);
    assert!(s.take_push_fault() && s.take_push_fault() && !s.take_push_fault());
}

fn human(s: &mut HsState, local: &str) -> (String, Requester) {
    let (uid, _) = s.register_human(local, None).unwrap();
    let req = Requester::User {
        user_id: uid.clone(),
        device_id: "D".into(),
    };
    (uid, req)
}

#[test]
fn create_room_with_an_alias_points_it_at_the_room_and_refuses_it_twice() {
    let mut s = hs();
    let ghost = register_ghost(&mut s, "_gitter_alice");
    let rid = create(
        &mut s,
        &ghost,
        json!({"room_alias_name": "_gitter_portal_1"}),
    )
    .unwrap();
    let alias = "#_gitter_portal_1:localhost";
    assert_eq!(s.alias_target(alias), Some(rid.as_str()));
    assert_eq!(
        s.get_alias(alias).unwrap(),
        json!({"room_id": rid, "servers": ["localhost"]})
    );
    let room = s.room_info(&rid).unwrap();
    assert_eq!(
        room.state_content("m.room.canonical_alias", ""),
        Some(&json!({"alias": alias}))
    );
    // Synapse's order: the canonical alias right after the power levels.
    let kinds: Vec<&str> = room.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        &kinds[..4],
        &[
            "m.room.create",
            "m.room.member",
            "m.room.power_levels",
            "m.room.canonical_alias"
        ]
    );
    // Taken: 400 M_ROOM_IN_USE and no second room, whoever asks.
    let rooms = s.room_ids().len();
    let e = create(&mut s, BOT, json!({"room_alias_name": "_gitter_portal_1"})).unwrap_err();
    assert_eq!(
        (e.status, e.errcode.as_str(), e.error.as_str()),
        (400, "M_ROOM_IN_USE", "Room alias already taken")
    );
    assert_eq!(s.room_ids().len(), rooms);
}

#[test]
fn alias_names_and_namespaces_are_checked_before_a_room_exists() {
    let mut s = hs();
    let (alice, _) = human(&mut s, "alice");
    let refused = |s: &mut HsState, who: &str, name: &str| {
        let before = s.room_ids().len();
        let e = create(s, who, json!({"room_alias_name": name})).unwrap_err();
        assert_eq!(s.room_ids().len(), before, "{name}: nothing created");
        e
    };
    let e = refused(&mut s, BOT, "has space");
    assert_eq!(
        (e.status, e.error.as_str()),
        (400, "Invalid characters in room alias")
    );
    let e = refused(&mut s, BOT, "_gitter_x:localhost");
    assert!(e.error.starts_with("':' is not permitted"), "{e}");
    // An AS only inside its alias namespace (also when masquerading).
    let e = refused(&mut s, BOT, "elsewhere");
    assert_eq!(
        (e.status, e.errcode.as_str(), e.error.as_str()),
        (
            400,
            "M_EXCLUSIVE",
            "This application service has not reserved this kind of alias."
        )
    );
    // A human not inside an exclusive one.
    let e = refused(&mut s, &alice, "_gitter_mine");
    assert_eq!(
        (e.errcode.as_str(), e.error.as_str()),
        (
            "M_EXCLUSIVE",
            "This alias is reserved by an application service."
        )
    );
    let e = refused(&mut s, BOT, &format!("_gitter_{}", "x".repeat(250)));
    assert_eq!((e.status, e.errcode.as_str()), (400, "M_INVALID_PARAM"));
    let rid = create(&mut s, &alice, json!({"room_alias_name": "alices"})).unwrap();
    assert_eq!(s.alias_target("#alices:localhost"), Some(rid.as_str()));
}

#[test]
fn an_orphan_room_from_the_v12_refusal_keeps_its_alias() {
    let mut s = hs();
    let body = json!({
        "room_alias_name": "_gitter_portal_2",
        "power_level_content_override": {"users": {BOT: 100}}
    });
    assert_eq!(
        create(&mut s, BOT, body.clone()).unwrap_err().errcode,
        "M_UNKNOWN"
    );
    let orphan = s
        .alias_target("#_gitter_portal_2:localhost")
        .map(str::to_string);
    assert_eq!(orphan.as_deref(), s.room_ids().first().map(String::as_str));
    // Synapse made the association before the first event: the retry is refused.
    assert_eq!(
        create(&mut s, BOT, body).unwrap_err().errcode,
        "M_ROOM_IN_USE"
    );
}

#[test]
fn an_initial_canonical_alias_replaces_the_generated_one() {
    let mut s = hs();
    let rid = create(
        &mut s,
        BOT,
        json!({
            "room_alias_name": "_gitter_portal_3",
            "initial_state": [{"type": "m.room.canonical_alias", "content": {}}]
        }),
    )
    .unwrap();
    let room = s.room_info(&rid).unwrap();
    assert_eq!(
        room.state_content("m.room.canonical_alias", ""),
        Some(&json!({}))
    );
    assert_eq!(
        room.events
            .iter()
            .filter(|e| e.kind == "m.room.canonical_alias")
            .count(),
        1
    );
}

#[test]
fn the_directory_answers_and_deletes_like_synapse() {
    let mut s = hs();
    let ghost = register_ghost(&mut s, "_gitter_alice");
    let rid = create(&mut s, &ghost, json!({"room_alias_name": "_gitter_p"})).unwrap();
    let alias = "#_gitter_p:localhost";
    for bad in [
        "_gitter_p:localhost",
        "#nodomain",
        "#x:bad host",
        "#x:host:port",
    ] {
        let e = s.get_alias(bad).unwrap_err();
        assert_eq!(
            (e.status, e.errcode.as_str(), e.error.as_str()),
            (400, "M_INVALID_PARAM", "Room alias invalid"),
            "{bad}"
        );
    }
    assert!(s.get_alias("#x:[::1]:8448").unwrap_err().status == 404);
    let e = s.get_alias("#nope:localhost").unwrap_err();
    assert_eq!(
        (e.status, e.errcode.as_str(), e.error.as_str()),
        (404, "M_NOT_FOUND", "Room alias #nope:localhost not found")
    );
    // The AS (as its bot) deletes what its ghost made; the canonical alias stays.
    s.delete_alias(&as_req(BOT), alias, T0).unwrap();
    assert_eq!(s.alias_target(alias), None);
    assert_eq!(
        s.room_info(&rid)
            .unwrap()
            .state_content("m.room.canonical_alias", ""),
        Some(&json!({"alias": alias}))
    );
    // Gone again is no error for an AS; outside its namespace is.
    s.delete_alias(&as_req(BOT), alias, T0).unwrap();
    let e = s
        .delete_alias(&as_req(BOT), "#other:localhost", T0)
        .unwrap_err();
    assert_eq!((e.status, e.errcode.as_str()), (400, "M_EXCLUSIVE"));
}

#[test]
fn humans_delete_their_own_aliases_or_with_the_power_to() {
    let mut s = hs();
    let (alice, alice_req) = human(&mut s, "alice");
    let (bob, bob_req) = human(&mut s, "bob");
    let rid = create(
        &mut s,
        &alice,
        json!({"room_alias_name": "hangout", "preset": "public_chat"}),
    )
    .unwrap();
    let alias = "#hangout:localhost";
    let e = s
        .delete_alias(&bob_req, "#unknown:localhost", T0)
        .unwrap_err();
    assert_eq!(
        (e.status, e.errcode.as_str(), e.error.as_str()),
        (404, "M_NOT_FOUND", "Unknown room alias")
    );
    let e = s.delete_alias(&bob_req, alias, T0).unwrap_err();
    assert_eq!(
        (e.status, e.error),
        (403, format!("User {bob} not in room {rid}"))
    );
    s.join(&bob, &rid, T0).unwrap();
    let e = s.delete_alias(&bob_req, alias, T0).unwrap_err();
    assert_eq!(
        (e.status, e.error.as_str()),
        (403, "You don't have permission to delete the alias.")
    );
    // Bob may make his own alias (he is in the room) and delete it.
    s.put_alias(&bob_req, "#bobs:localhost", &rid).unwrap();
    let e = s.put_alias(&bob_req, "#bobs:localhost", &rid).unwrap_err();
    assert_eq!(
        (e.status, e.error.as_str()),
        (409, "Room alias #bobs:localhost already exists")
    );
    s.delete_alias(&bob_req, "#bobs:localhost", T0).unwrap();
    // The creator deletes hers; the canonical alias event loses it.
    s.delete_alias(&alice_req, alias, T0).unwrap();
    assert_eq!(s.alias_target(alias), None);
    assert_eq!(
        s.room_info(&rid)
            .unwrap()
            .state_content("m.room.canonical_alias", ""),
        Some(&json!({}))
    );
    let (_, carol_req) = human(&mut s, "carol");
    let e = s
        .put_alias(&carol_req, "#carols:localhost", &rid)
        .unwrap_err();
    assert_eq!(
        (e.status, e.error.as_str()),
        (403, "You must be in the room to create an alias for it")
    );
    let e = s
        .put_alias(&as_req(BOT), "#carols:localhost", &rid)
        .unwrap_err();
    assert_eq!(e.errcode, "M_EXCLUSIVE");
}

#[test]
fn lost_answers_count_only_their_routes() {
    let mut s = hs();
    s.lose_answers(2, vec![CsRoute::Send, CsRoute::CreateRoom]);
    assert!(!s.take_lost_answer(CsRoute::Invite));
    assert!(s.take_lost_answer(CsRoute::Send));
    assert_eq!(s.pending_lost_answers(), 1);
    assert!(s.take_lost_answer(CsRoute::CreateRoom));
    assert!(!s.take_lost_answer(CsRoute::Send), "spent");
    s.lose_answers(1, vec![CsRoute::Any]);
    s.clear_faults();
    assert!(!s.take_lost_answer(CsRoute::Whoami), "cleared");
    s.lose_answers(1, vec![CsRoute::Any]);
    assert!(s.take_lost_answer(CsRoute::Whoami));
}
