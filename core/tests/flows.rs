//! Scenario tests, one per behaviour of docs/behaviour.md.

mod common;

use common::*;
use gitter_bridge_core::*;

// ------------------------------------------------------------------ invites

#[test]
fn invite_from_permitted_user_sets_control_room_and_greets_with_login_link() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    assert_eq!(h.store.users[&alice].control_room.as_ref(), Some(&dm));
    assert!(
        h.last_notice(&dm)
            .contains("https://bridge.example.org/login/")
    );
}

#[test]
fn invite_from_user_of_another_domain_gets_notice_and_bot_leaves() {
    let mut h = Harness::new();
    let mallory: OwnedUserId = "@mallory:evil.example".try_into().unwrap();
    let dm = h.dm_bot(&mallory, &[]);
    assert!(h.last_notice(&dm).contains("not allowed"));
    assert!(!h.matrix[&dm].members.contains(&h.bot()));
    assert!(!h.store.users.contains_key(&mallory));
}

#[test]
fn permissions_by_user_id_admit_a_listed_user_only() {
    let mut c = config();
    c.permissions.domains.clear();
    c.permissions.users = vec![uid("alice")];
    let mut h = Harness::with_config(c);
    let dm = h.dm_bot(&uid("alice"), &[]);
    assert!(h.last_notice(&dm).contains("login"));
    let dm2 = h.dm_bot(&uid("bob"), &[]);
    assert!(h.last_notice(&dm2).contains("not allowed"));
}

#[test]
fn group_room_is_refused_and_remembered() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let room = h.dm_bot(&alice, &[uid("carol")]);
    assert!(h.last_notice(&room).contains("only work in private chats"));
    assert!(h.store.refused_rooms.contains(&room));
    assert!(!h.matrix[&room].members.contains(&h.bot()));
    // A second invite to the same room is declined without a word.
    let bot = h.bot();
    let ev = h.event(
        &room,
        &alice,
        MatrixEventKind::Member {
            target: bot.clone(),
            membership: Membership::Invite,
        },
    );
    let out = h.txn(vec![ev]);
    assert!(
        matches!(&out.effects[..], [Effect { action: Action::Matrix(MatrixCall::Leave { user, .. }), .. }] if user == &bot)
    );
}

#[test]
fn new_control_room_replaces_the_previous_one_and_bot_leaves_it() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let first = h.dm_bot(&alice, &[]);
    let second = h.dm_bot(&alice, &[]);
    assert_eq!(h.store.users[&alice].control_room.as_ref(), Some(&second));
    assert!(!h.matrix[&first].members.contains(&h.bot()));
}

#[test]
fn leaving_the_control_room_clears_it() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    let ev = h.event(
        &dm,
        &alice,
        MatrixEventKind::Member {
            target: alice.clone(),
            membership: Membership::Leave,
        },
    );
    h.txn(vec![ev]);
    h.settle();
    assert_eq!(h.store.users[&alice].control_room, None);
}

#[test]
fn greeting_of_a_logged_in_user_is_the_help_text() {
    let mut h = Harness::new();
    let (alice, _) = h.logged_in_user("alice", "alice");
    let dm = h.dm_bot(&alice, &[]);
    assert!(h.last_notice(&dm).contains("logged in to Gitter as alice"));
    assert!(h.last_notice(&dm).contains("Commands:"));
}

// ------------------------------------------------------------------ login

#[test]
fn login_flow_stores_login_says_so_and_opens_portals_for_member_rooms() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    h.add_gitter_room("org/other", &["bob"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let login = h.store.users[&alice].login.clone().unwrap();
    assert_eq!(login.username, "alice");
    assert!(login.valid);
    assert!(
        h.notices(&dm)
            .iter()
            .any(|n| n == "You are now logged in as alice.")
    );
    let portal = h.portal(&alice, &room).expect("portal for a member room");
    assert!(h.matrix[&portal].members.contains(&alice));
    assert_eq!(
        h.store.portals.len(),
        1,
        "no portal for rooms the user is not in"
    );
    let success = h.replies.iter().any(|(_, r)| matches!(r, WebReply::Page { status: 200, message, .. } if message.contains("alice")));
    assert!(success);
}

#[test]
fn login_link_asks_first_then_redirects_to_authorize_url_with_client_id_redirect_uri_and_state() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    let token = h.link_in(&dm).rsplit('/').next().unwrap().to_owned();
    assert_eq!(token.len(), 32, "128-bit token");
    let req = h.request();
    h.step(Input::LoginLinkOpened {
        request: req,
        token: token.clone(),
    });
    let Some(WebReply::Confirm {
        message,
        button,
        csrf,
        ..
    }) = h.reply_to(req)
    else {
        panic!("{:?}", h.reply_to(req))
    };
    assert!(message.contains("@alice:example.org"), "{message}");
    assert!(button.contains("@alice:example.org"), "{button}");
    assert_eq!(csrf.len(), 32);
    let req = h.request();
    h.step(Input::LoginLinkConfirmed {
        request: req,
        token,
    });
    let Some(WebReply::OAuthRedirect { url, state }) = h.reply_to(req) else {
        panic!()
    };
    assert!(url.starts_with("https://gitter.example/login/oauth/authorize?client_id=cid&response_type=code&redirect_uri=https%3A%2F%2Fbridge.example.org%2Foauth%2Fcallback&state="));
    assert!(url.ends_with(&state));
}

#[test]
fn opening_a_link_spends_nothing_so_a_preview_cannot_burn_it() {
    let mut h = Harness::new();
    let dm = h.dm_bot(&uid("alice"), &[]);
    let token = h.link_in(&dm).rsplit('/').next().unwrap().to_owned();
    for _ in 0..3 {
        let req = h.request();
        let out = h.step(Input::LoginLinkOpened {
            request: req,
            token: token.clone(),
        });
        assert!(out.changes.is_empty(), "a GET changes nothing");
        assert!(matches!(h.reply_to(req), Some(WebReply::Confirm { .. })));
    }
    h.confirm_link(&token);
}

#[test]
fn login_link_is_single_use() {
    let mut h = Harness::new();
    let dm = h.dm_bot(&uid("alice"), &[]);
    let token = h.link_in(&dm).rsplit('/').next().unwrap().to_owned();
    h.confirm_link(&token);
    let r2 = h.request();
    let out = h.step(Input::LoginLinkConfirmed { request: r2, token });
    assert!(matches!(
        h.reply_to(r2),
        Some(WebReply::Page { status: 404, .. })
    ));
    assert!(out.changes.is_empty(), "a reused link changes nothing");
}

#[test]
fn a_callback_from_another_browser_is_refused_and_the_sign_in_stays_for_its_own() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    let token = h.link_in(&dm).rsplit('/').next().unwrap().to_owned();
    let state = h.confirm_link(&token);
    for browser in [None, Some("another".to_owned())] {
        let req = h.request();
        let out = h.step(Input::OAuthCallback {
            request: req,
            code: Some(Secret::new("code-mallory")),
            state: Some(state.clone()),
            error: None,
            browser,
        });
        assert!(matches!(
            h.reply_to(req),
            Some(WebReply::Page { status: 403, .. })
        ));
        assert!(out.effects.is_empty(), "no code exchanged");
    }
    let req = h.request();
    h.step(Input::OAuthCallback {
        request: req,
        code: Some(Secret::new("code-alice")),
        state: Some(state.clone()),
        error: None,
        browser: Some(state),
    });
    h.settle();
    assert!(
        h.last_notice(&dm)
            .contains("You are now logged in as alice")
    );
}

#[test]
fn a_user_has_at_most_three_live_links() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    for _ in 0..10 {
        h.say(&dm, &alice, "login");
        h.settle();
    }
    let live = h
        .store
        .login_links
        .values()
        .filter(|t| t.user == alice)
        .count();
    assert_eq!(live, 3);
}

#[test]
fn linking_a_gitter_account_already_linked_elsewhere_moves_it_and_tells_the_previous_user() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (first, first_dm) = h.logged_in_user("first", "alice");
    h.settle();
    assert!(h.portal(&first, &room).is_some());
    let (second, _) = h.logged_in_user("second", "alice");
    h.settle();
    assert!(
        h.store.users[&first].login.is_none(),
        "unlinked from the first"
    );
    assert_eq!(
        h.store.users[&second].login.as_ref().unwrap().username,
        "alice"
    );
    assert!(
        h.notices(&first_dm)
            .iter()
            .any(|n| n.contains("was just linked to another Matrix account, @second:example.org")),
        "{:?}",
        h.notices(&first_dm)
    );
    assert_eq!(
        h.store.portals[&(first.clone(), room.clone())].state,
        PortalState::Closed
    );
}

#[test]
fn login_link_expires_after_the_configured_lifetime() {
    let mut h = Harness::new();
    let dm = h.dm_bot(&uid("alice"), &[]);
    let token = h.link_in(&dm).rsplit('/').next().unwrap().to_owned();
    h.now = h.now.plus_ms(15 * 60 * 1000 + 1);
    let req = h.request();
    h.step(Input::LoginLinkOpened {
        request: req,
        token,
    });
    assert!(matches!(
        h.reply_to(req),
        Some(WebReply::Page { status: 410, .. })
    ));
    assert!(h.store.oauth_states.is_empty());
}

#[test]
fn a_link_opened_after_its_expiry_gets_the_expired_page_even_after_timers_ran() {
    // The runtime fires the timer at every deadline the core asks for, so an expired link
    // must survive the timers that run around its expiry.
    let mut h = Harness::new();
    let dm = h.dm_bot(&uid("alice"), &[]);
    let token = h.link_in(&dm).rsplit('/').next().unwrap().to_owned();
    h.now = h.now.plus_ms(15 * 60 * 1000 + 1);
    h.step(Input::Timer);
    let req = h.request();
    h.step(Input::LoginLinkOpened {
        request: req,
        token,
    });
    assert!(matches!(
        h.reply_to(req),
        Some(WebReply::Page { status: 410, .. })
    ));
}

#[test]
fn expired_links_are_purged_by_the_timer() {
    let mut h = Harness::new();
    h.dm_bot(&uid("alice"), &[]);
    assert!(!h.store.login_links.is_empty());
    // Each timer the core asks for (other timers, such as pruning's, come in between).
    let mut out = h.step(Input::Timer);
    for _ in 0..10 {
        if h.store.login_links.is_empty() {
            break;
        }
        h.now = out.next_timer.expect("a timer while links are kept");
        out = h.step(Input::Timer);
    }
    assert!(h.store.login_links.is_empty());
}

#[test]
fn unknown_or_reused_oauth_state_gets_an_error_page_and_no_change() {
    let mut h = Harness::new();
    let req = h.request();
    let out = h.step(Input::OAuthCallback {
        request: req,
        code: Some(Secret::new("code-x")),
        state: Some("nope".into()),
        error: None,
        browser: Some("nope".into()),
    });
    assert!(matches!(
        h.reply_to(req),
        Some(WebReply::Page { status: 400, .. })
    ));
    assert!(out.changes.is_empty() && out.effects.is_empty());
}

#[test]
fn denied_authorization_gets_an_error_page() {
    let mut h = Harness::new();
    let dm = h.dm_bot(&uid("alice"), &[]);
    let token = h.link_in(&dm).rsplit('/').next().unwrap().to_owned();
    let state = h.confirm_link(&token);
    let req = h.request();
    let out = h.step(Input::OAuthCallback {
        request: req,
        code: None,
        state: Some(state.clone()),
        error: Some("access_denied".into()),
        browser: Some(state),
    });
    assert!(matches!(
        h.reply_to(req),
        Some(WebReply::Page { status: 400, .. })
    ));
    assert!(out.effects.is_empty());
}

#[test]
fn failed_code_exchange_shows_an_error_page_and_tells_the_user() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    h.failures
        .entry("exchange_code")
        .or_default()
        .push_back(FailureKind::Rejected);
    h.login(&alice, &dm, "alice");
    assert!(
        h.replies
            .iter()
            .any(|(_, r)| matches!(r, WebReply::Page { status: 502, .. }))
    );
    assert!(h.last_notice(&dm).contains("Logging in to Gitter failed"));
    assert!(h.store.users[&alice].login.is_none());
}

#[test]
fn no_portals_on_login_when_disabled() {
    let mut c = config();
    c.open_portals_on_login = false;
    let mut h = Harness::with_config(c);
    h.add_gitter_room("org/chat", &["alice"]);
    h.logged_in_user("alice", "alice");
    assert!(h.store.portals.is_empty());
}

// ------------------------------------------------------------------ commands

#[test]
fn help_and_unknown_commands() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    h.say(&dm, &alice, "HeLp");
    h.settle();
    assert!(h.last_notice(&dm).contains("Commands:"));
    // Rendered: a list, commands as code, and a ping for nobody.
    let help = h.last_message(&dm);
    let html = help.formatted_body.as_deref().unwrap();
    assert!(
        html.contains("<ul>\n<li><code>help</code>: this text</li>"),
        "{html}"
    );
    assert!(html.contains("<code>join &lt;room&gt;</code>"), "{html}");
    assert_eq!(help.mentions, Some(Mentions::default()));
    h.say(&dm, &alice, "frobnicate");
    h.settle();
    assert_eq!(
        h.last_notice(&dm),
        "Unknown command `frobnicate`. Send `help` for the list of commands."
    );
}

#[test]
fn commands_needing_a_login_answer_log_in_first_with_a_fresh_link() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    let first = h.link_in(&dm);
    for cmd in ["list", "join org/chat", "leave org/chat", "invite org/chat"] {
        h.say(&dm, &alice, cmd);
        h.settle();
        assert!(
            h.last_notice(&dm)
                .starts_with("You need to log in to Gitter first: https://"),
            "{cmd}"
        );
        assert_ne!(h.link_in(&dm), first);
    }
}

#[test]
fn wrong_arguments_get_a_usage_line() {
    let mut h = Harness::new();
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.say(&dm, &alice, "join");
    h.settle();
    assert!(h.last_notice(&dm).starts_with("Usage: `join <room>`"));
}

#[test]
fn list_marks_rooms_with_a_joined_portal() {
    let mut c = config();
    c.open_portals_on_login = false;
    let mut h = Harness::with_config(c);
    h.add_gitter_room("org/chat", &["alice"]);
    h.add_gitter_room("org/dev", &["alice"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.say(&dm, &alice, "invite org/dev");
    h.settle();
    // Invited only: the legend promises a star for a joined room.
    h.say(&dm, &alice, "list");
    h.settle();
    let n = h.last_notice(&dm);
    assert!(n.contains("(★ = you have joined its Matrix room)"), "{n}");
    assert!(n.contains("\n- `org/chat`"), "{n}");
    assert!(n.contains("\n- `org/dev`"), "{n}");
    let dev = h.room_for("org/dev");
    let portal = h.portal(&alice, &dev).unwrap();
    h.happen(
        &portal,
        &alice,
        MatrixEventKind::Member {
            target: alice.clone(),
            membership: Membership::Join,
        },
    );
    h.say(&dm, &alice, "list");
    h.settle();
    let n = h.last_notice(&dm);
    assert!(n.contains("\n- `org/chat`"), "{n}");
    assert!(n.contains("\n- ★ `org/dev`"), "{n}");
}

#[test]
fn join_joins_on_gitter_then_opens_the_portal() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/new", &["bob"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.say(&dm, &alice, "gjoin org/NEW");
    h.settle();
    assert!(h.gitter[&room].members.contains("alice"));
    assert!(
        h.notices(&dm)
            .iter()
            .any(|n| n == "Joined org/new on Gitter.")
    );
    assert!(h.portal(&alice, &room).is_some());
}

#[test]
fn join_of_an_unknown_room_says_no_room_named() {
    let mut h = Harness::new();
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.say(&dm, &alice, "join x/y");
    h.settle();
    assert_eq!(h.last_notice(&dm), "No Gitter room named x/y.");
}

#[test]
fn join_refused_by_gitter_says_so() {
    let mut h = Harness::new();
    h.add_gitter_room("org/private", &["bob"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.failures
        .entry("join_gitter_room")
        .or_default()
        .push_back(FailureKind::Forbidden);
    h.say(&dm, &alice, "join org/private");
    h.settle();
    assert_eq!(
        h.last_notice(&dm),
        "Gitter refused to let you join org/private."
    );
}

#[test]
fn leave_leaves_on_gitter_and_kicks_from_the_portal() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.say(&dm, &alice, "gpart org/chat");
    h.settle();
    assert!(!h.gitter[&room].members.contains("alice"));
    assert!(!h.matrix[&portal].members.contains(&alice));
    assert_eq!(
        h.store.portals[&(alice.clone(), room.clone())].state,
        PortalState::Closed
    );
    assert!(
        h.notices(&dm)
            .iter()
            .any(|n| n == "Left org/chat on Gitter.")
    );
}

#[test]
fn leave_of_a_room_the_user_is_not_in_says_so() {
    let mut h = Harness::new();
    h.add_gitter_room("org/chat", &["bob"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.say(&dm, &alice, "leave org/chat");
    h.settle();
    assert_eq!(h.last_notice(&dm), "You are not in org/chat on Gitter.");
}

#[test]
fn invite_of_a_room_the_user_is_not_in_points_to_join() {
    let mut h = Harness::new();
    h.add_gitter_room("org/chat", &["bob"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.say(&dm, &alice, "invite org/chat");
    h.settle();
    assert!(h.last_notice(&dm).contains("Send `join org/chat`"));
}

#[test]
fn whoami_names_the_gitter_account() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    h.say(&dm, &alice, "whoami");
    h.settle();
    assert!(h.last_notice(&dm).contains("not logged in"));
    h.say(&dm, &alice, "login");
    h.settle();
    h.login(&alice, &dm, "alice_gh");
    h.say(&dm, &alice, "whoami");
    h.settle();
    assert_eq!(
        h.last_notice(&dm),
        "You are logged in to Gitter as alice_gh."
    );
}

#[test]
fn logout_forgets_the_token_and_kicks_from_every_portal() {
    let mut h = Harness::new();
    let a = h.add_gitter_room("org/a", &["alice"]);
    let b = h.add_gitter_room("org/b", &["alice"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let (pa, pb) = (h.portal(&alice, &a).unwrap(), h.portal(&alice, &b).unwrap());
    h.say(&dm, &alice, "logout");
    h.settle();
    assert!(h.store.users[&alice].login.is_none());
    assert!(!h.matrix[&pa].members.contains(&alice));
    assert!(!h.matrix[&pb].members.contains(&alice));
    assert!(h.streams.is_empty(), "no reader left: streams closed");
    assert!(h.last_notice(&dm).starts_with("You are logged out"));
}

#[test]
fn commands_from_other_rooms_or_as_notices_are_ignored() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    let before = h.notices(&dm).len();
    h.say_as(&dm, &alice, MsgType::Notice, "help");
    let other: OwnedRoomId = "!elsewhere".try_into().unwrap();
    h.say(&other, &alice, "help");
    h.settle();
    assert_eq!(h.notices(&dm).len(), before);
}

// ------------------------------------------------------------------ portals and ghosts

#[test]
fn portal_is_private_named_after_the_room_with_topic_and_creator_not_in_power_users() {
    let mut h = Harness::new();
    h.add_gitter_room("org/chat", &["alice"]);
    h.logged_in_user("alice", "alice");
    let create = h.first_portal_creation();
    assert_eq!(create.creator, h.bot());
    assert_eq!(create.name, "org/chat");
    assert_eq!(create.topic, "topic of org/chat");
    assert_eq!(create.invite, vec![uid("alice")]);
    assert!(!create.power_users.contains_key(&h.bot()));
    // A room chat, not a direct one; its m.bridge state names the room and the network.
    assert!(!create.is_direct);
    let bridge = create.bridge.unwrap();
    assert_eq!(bridge.bot, h.bot());
    assert_eq!(bridge.room_id, h.room_for("org/chat"));
    assert_eq!(bridge.room_name, "org/chat");
    assert_eq!(bridge.room_uri.as_deref(), Some("org/chat"));
    assert_eq!(bridge.web_url, "https://gitter.im");
}

#[test]
fn logins_and_portals_opening_and_closing_are_reported_for_the_operator_log() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    assert!(h.happenings.iter().any(|e| matches!(e,
        Happening::LoggedIn { user, username, .. } if user == &alice && username == "alice")));
    assert!(h.happenings.contains(&Happening::PortalCreated {
        owner: alice.clone(),
        gitter_room: room.clone(),
        room: portal,
    }));
    h.say(&dm, &alice, "logout");
    h.settle();
    assert!(h.happenings.iter().any(|e| matches!(e,
        Happening::LoggedOut { user, .. } if user == &alice)));
    assert!(h.happenings.iter().any(|e| matches!(e,
        Happening::PortalClosed { owner, gitter_room, .. }
            if owner == &alice && gitter_room == &room)));
}

#[test]
fn ghosts_of_small_rooms_join_at_creation_with_display_name() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    assert!(h.matrix[&portal].members.contains(&uid("gitter_bob")));
    assert!(h.log.iter().any(|e| matches!(&e.action, Action::Matrix(MatrixCall::SetDisplayName { user, name }) if user == &uid("gitter_bob") && name == "bob Display (Gitter)")));
    assert!(h.log.iter().any(
        |e| matches!(&e.action, Action::Matrix(MatrixCall::RegisterGhost { user }) if user == &uid("gitter_bob"))
    ));
}

#[test]
fn ghosts_of_big_rooms_join_lazily_before_their_first_message() {
    let mut c = config();
    c.eager_join_threshold = 2;
    let mut h = Harness::with_config(c);
    let room = h.add_gitter_room("org/big", &["alice", "bob", "carol"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    assert!(!h.matrix[&portal].members.contains(&uid("gitter_bob")));
    h.gitter_says(&room, "bob", "hi");
    // Register, name, invite, join and send are in one lane, in that order.
    let lane: Vec<&str> = h.pending.iter().map(|e| e.action.name()).collect();
    assert_eq!(
        lane,
        [
            "register_ghost",
            "set_display_name",
            "invite",
            "join",
            "send_matrix"
        ]
    );
    h.settle();
    assert!(h.matrix[&portal].members.contains(&uid("gitter_bob")));
}

#[test]
fn ghost_is_keyed_by_gitter_id_so_a_rename_keeps_it() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "bob", "one");
    h.settle();
    let mut m = h.gitter_post(&room, "bob", "two");
    m.from.username = "robert".into();
    m.from.display_name = "Robert".into();
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: m,
    });
    h.settle();
    let portal = h.portal(&alice, &room).unwrap();
    let senders: Vec<_> = h.timeline(&portal).into_iter().map(|(s, _)| s).collect();
    assert_eq!(senders, vec![uid("gitter_bob"), uid("gitter_bob")]);
    assert!(h.log.iter().any(
        |e| matches!(&e.action, Action::Matrix(MatrixCall::SetDisplayName { name, .. }) if name == "Robert (Gitter)")
    ));
}

#[test]
fn an_owner_who_joins_before_the_create_answer_arrives_is_joined() {
    let mut c = config();
    c.open_portals_on_login = false;
    let mut h = Harness::with_config(c);
    let dev = h.add_gitter_room("org/dev", &["alice"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    h.say(&dm, &alice, "invite org/dev");
    let is_create = |e: &Effect| matches!(e.action, Action::Matrix(MatrixCall::CreatePortal(_)));
    while !h.pending.iter().any(is_create) {
        assert!(h.complete_next().is_some(), "no portal creation");
    }
    // The homeserver made the room and invited alice, who joins at once; the bridge hears
    // of her join before the createRoom answer (a lost answer is found again by its alias
    // only after a backoff).
    let pos = h.pending.iter().position(is_create).unwrap();
    let create = h.pending.remove(pos).unwrap();
    let result = h.respond(&create);
    let Ok(EffectOutput::RoomCreated(room)) = result.clone() else {
        panic!("{result:?}")
    };
    h.happen(
        &room,
        &alice,
        MatrixEventKind::Member {
            target: alice.clone(),
            membership: Membership::Join,
        },
    );
    h.step(Input::EffectDone {
        id: create.id,
        result,
    });
    h.settle();
    assert_eq!(
        h.store.portals[&(alice.clone(), dev)].state,
        PortalState::Active
    );
    h.say(&dm, &alice, "list");
    h.settle();
    assert!(
        h.last_notice(&dm).contains("\n- ★ `org/dev`"),
        "{}",
        h.last_notice(&dm)
    );
}

#[test]
fn owner_leaving_a_portal_keeps_gitter_membership_and_invite_reopens_it() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let ev = h.event(
        &portal,
        &alice,
        MatrixEventKind::Member {
            target: alice.clone(),
            membership: Membership::Leave,
        },
    );
    h.txn(vec![ev]);
    h.settle();
    assert_eq!(
        h.store.portals[&(alice.clone(), room.clone())].state,
        PortalState::Closed
    );
    assert!(h.gitter[&room].members.contains("alice"));
    h.say(&dm, &alice, "invite org/chat");
    h.settle();
    assert_eq!(
        h.store.portals[&(alice.clone(), room.clone())].state,
        PortalState::Invited
    );
    assert_eq!(
        h.portal(&alice, &room),
        Some(portal.clone()),
        "the same room comes back"
    );
    assert!(h.matrix[&portal].members.contains(&alice));
}

// ------------------------------------------------------------------ Gitter -> Matrix

#[test]
fn gitter_message_fans_out_to_every_portal_of_the_room_as_the_ghost() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob", "carol"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    h.gitter_says(&room, "carol", "hello all");
    h.settle();
    for owner in [&alice, &bob] {
        let portal = h.portal(owner, &room).unwrap();
        assert_eq!(
            h.timeline(&portal),
            vec![(uid("gitter_carol"), "hello all".to_owned())]
        );
    }
    assert_eq!(h.streams.len(), 1, "one stream per Gitter room");
}

#[test]
fn gitter_html_is_sanitised_and_status_messages_become_emotes() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let mut m = h.gitter_post(&room, "bob", "**hi**");
    m.html = "<strong>hi</strong><script>x()</script>".into();
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: m,
    });
    let mut s = h.gitter_post(&room, "bob", "@bob waves");
    s.status = true;
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: s,
    });
    h.settle();
    let portal = h.portal(&alice, &room).unwrap();
    let contents: Vec<_> = h.matrix[&portal]
        .timeline
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(
        contents[0].formatted_body.as_deref(),
        Some("<strong>hi</strong>")
    );
    assert_eq!(contents[1].msgtype, OutMsgType::Emote);
    assert_eq!(contents[1].body, "waves");
}

#[test]
fn duplicate_gitter_deliveries_are_bridged_once() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let m = h.gitter_says(&room, "bob", "once");
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: m,
    });
    h.settle();
    assert_eq!(h.timeline(&h.portal(&alice, &room).unwrap()).len(), 1);
}

#[test]
fn cursor_advances_in_the_change_set_of_the_message() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    h.logged_in_user("alice", "alice");
    let m = h.gitter_says(&room, "bob", "x");
    assert_eq!(h.store.cursors.get(&room), Some(&m.id));
}

#[test]
fn reconnect_catches_up_from_the_cursor_and_nothing_is_lost() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "bob", "before");
    h.settle();
    h.step(Input::StreamDisconnected {
        room: room.clone(),
        reason: FailureKind::Transient,
    });
    h.gitter_post(&room, "bob", "while down 1");
    h.gitter_post(&room, "bob", "while down 2");
    h.step(Input::StreamConnected { room: room.clone() });
    // A live message during catch-up waits so the order is kept.
    let live = h.gitter_post(&room, "bob", "live");
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: live,
    });
    h.settle();
    let bodies: Vec<_> = h
        .timeline(&h.portal(&alice, &room).unwrap())
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bodies, ["before", "while down 1", "while down 2", "live"]);
}

#[test]
fn a_new_rooms_baseline_is_committed_before_its_stream_opens() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    h.gitter_post(&room, "bob", "history");
    let alice = uid("alice");
    let control = h.dm_bot(&alice, &[]);
    h.start_login(&control, "alice");
    // Run until the room's stream is about to open.
    while !h
        .pending
        .front()
        .is_some_and(|e| matches!(e.action, Action::Stream(StreamCall::Open { .. })))
    {
        h.complete_next().expect("the stream opens");
    }
    // The baseline read went first, and its cursor is in the store already.
    assert!(h.log.iter().any(|e| matches!(
        &e.action,
        Action::Gitter { call: GitterCall::FetchMessages { after: None, room: r, .. }, .. } if r == &room
    )));
    assert!(h.store.cursors.contains_key(&room));
    // Bob writes, and the bridge dies before the stream connects: the restarted bridge
    // catches up from the committed cursor, so his message is not taken for history.
    h.gitter_post(&room, "bob", "after the baseline");
    h.restart();
    h.settle();
    h.gitter_says(&room, "bob", "live");
    h.settle();
    let bodies: Vec<_> = h
        .timeline(&h.portal(&alice, &room).unwrap())
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        bodies,
        ["history", "after the baseline", "live"],
        "the portal starts with its history, and nothing after the baseline is lost"
    );
}

#[test]
fn catch_up_pages_until_a_short_page() {
    let mut c = config();
    c.catch_up_page = 2;
    let mut h = Harness::with_config(c);
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "bob", "0");
    h.settle();
    for i in 1..=5 {
        h.gitter_post(&room, "bob", &i.to_string());
    }
    h.step(Input::StreamConnected { room: room.clone() });
    h.settle();
    let bodies: Vec<_> = h
        .timeline(&h.portal(&alice, &room).unwrap())
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bodies, ["0", "1", "2", "3", "4", "5"]);
    let fetches = h
        .log
        .iter()
        .filter(|e| {
            matches!(
                e.action,
                Action::Gitter {
                    call: GitterCall::FetchMessages { after: Some(_), .. },
                    ..
                }
            )
        })
        .count();
    assert!(fetches >= 3);
}

#[test]
fn failed_catch_up_is_retried_by_the_timer() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "bob", "a");
    h.settle();
    h.gitter_post(&room, "bob", "missed");
    h.failures
        .entry("fetch_messages")
        .or_default()
        .push_back(FailureKind::Transient);
    h.step(Input::StreamConnected { room: room.clone() });
    h.settle();
    let out = h.step(Input::Timer);
    h.now = out.next_timer.expect("a retry is scheduled");
    h.step(Input::Timer);
    h.settle();
    assert_eq!(h.timeline(&h.portal(&alice, &room).unwrap()).len(), 2);
}

#[test]
fn a_failed_baseline_is_not_retried_once_another_reader_has_one() {
    // No history reads: the failure is the baseline's.
    let mut c = config();
    c.backfill_messages = 0;
    let mut h = Harness::with_config(c);
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    h.failures
        .entry("fetch_messages")
        .or_default()
        .push_back(FailureKind::Transient);
    // alice's baseline read fails and a retry is scheduled.
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    assert!(!h.store.cursors.contains_key(&room));
    // She logs out before the retry: bob reads the room, his baseline works, the stream opens.
    h.say(&dm, &alice, "logout");
    h.settle();
    assert_eq!(h.store.gitter_rooms[&room].reader.as_ref(), Some(&bob));
    assert!(h.store.cursors.contains_key(&room));
    let reads = |h: &Harness| {
        h.log
            .iter()
            .filter(|e| matches!(&e.action, Action::Gitter { call: GitterCall::FetchMessages { room: r, .. }, .. } if r == &room))
            .count()
    };
    let opens = |h: &Harness| {
        h.log
            .iter()
            .filter(|e| matches!(&e.action, Action::Stream(StreamCall::Open { room: r, .. }) if r == &room))
            .count()
    };
    let (reads_before, opens_before) = (reads(&h), opens(&h));
    // The old retry's time comes: nothing is read or opened again.
    h.now = h.now.plus_ms(3_600_000);
    h.step(Input::Timer);
    h.settle();
    assert_eq!(reads(&h), reads_before);
    assert_eq!(opens(&h), opens_before);
    assert_eq!(opens_before, 1, "one stream for the room");
    h.gitter_says(&room, "alice", "from another client");
    h.settle();
    assert_eq!(h.timeline(&h.portal(&bob, &room).unwrap()).len(), 1);
}

#[test]
fn another_member_takes_over_reading_when_the_reader_logs_out() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob", "carol"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    assert_eq!(h.store.gitter_rooms[&room].reader.as_ref(), Some(&alice));
    h.say(&dm, &alice, "logout");
    h.settle();
    assert_eq!(h.store.gitter_rooms[&room].reader.as_ref(), Some(&bob));
    assert!(h.log.iter().any(
        |e| matches!(&e.action, Action::Stream(StreamCall::Open { token, .. }) if token.expose() == "tok-bob")
    ));
    h.gitter_says(&room, "carol", "still here");
    h.settle();
    assert_eq!(h.timeline(&h.portal(&bob, &room).unwrap()).len(), 1);
}

#[test]
fn another_member_takes_over_when_the_reader_token_is_revoked() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    h.step(Input::StreamDisconnected {
        room: room.clone(),
        reason: FailureKind::TokenRevoked,
    });
    h.settle();
    assert!(!h.store.users[&alice].login.as_ref().unwrap().valid);
    assert!(
        h.last_notice(&dm)
            .contains("has expired. Log in here: http")
    );
    assert_eq!(h.store.gitter_rooms[&room].reader.as_ref(), Some(&bob));
}

// ------------------------------------------------------------------ Matrix -> Gitter

#[test]
fn owner_message_is_sent_with_owner_token_and_mapped() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let ev = h.say(&portal, &alice, "hello gitter");
    h.settle();
    assert_eq!(
        h.gitter_timeline(&room),
        vec![("alice".to_owned(), "hello gitter".to_owned())]
    );
    let mapped = h
        .store
        .messages
        .values()
        .find(|m| m.origin == Origin::Matrix)
        .unwrap();
    assert_eq!(mapped.event_id.as_ref(), Some(&ev.event_id));
}

#[test]
fn echo_is_not_bridged_into_the_owner_portal_but_reaches_other_portals() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    let pa = h.portal(&alice, &room).unwrap();
    h.say(&pa, &alice, "from matrix");
    h.settle();
    // The stream delivers the copy after the send's result.
    let copy = h.gitter[&room].messages.last().unwrap().clone();
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: copy,
    });
    h.settle();
    assert!(h.timeline(&pa).is_empty(), "no echo");
    assert_eq!(
        h.timeline(&h.portal(&bob, &room).unwrap()),
        vec![(uid("gitter_alice"), "from matrix".to_owned())]
    );
}

#[test]
fn echo_arriving_before_the_send_result_is_held_and_recognised() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let (bob, _) = h.logged_in_user("bob", "bob");
    let pa = h.portal(&alice, &room).unwrap();
    h.say(&pa, &alice, "race");
    // Execute the POST in the world but hold back its result.
    let send = h.pending.pop_front().unwrap();
    assert!(matches!(
        send.action,
        Action::Gitter {
            call: GitterCall::SendMessage { .. },
            ..
        }
    ));
    let Action::Gitter {
        call: GitterCall::SendMessage { text, .. },
        ..
    } = &send.action
    else {
        unreachable!()
    };
    let posted = h.gitter_post(&room, "alice", text);
    h.step(Input::GitterMessage {
        room: room.clone(),
        message: posted.clone(),
    });
    let later = h.gitter_says(&room, "bob", "after");
    assert_eq!(
        h.bridge.held_messages(&room),
        2,
        "held until the send completes"
    );
    h.step(Input::EffectDone {
        id: send.id,
        result: Ok(EffectOutput::GitterMessage(posted)),
    });
    h.settle();
    assert_eq!(
        h.timeline(&pa),
        vec![(uid("gitter_bob"), "after".to_owned())]
    );
    let pb = h.portal(&bob, &room).unwrap();
    let bodies: Vec<_> = h.timeline(&pb).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, ["race", "after"]);
    let _ = later;
}

#[test]
fn owner_message_from_another_gitter_client_appears_as_their_ghost() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "alice", "from the web client");
    h.settle();
    assert_eq!(
        h.timeline(&h.portal(&alice, &room).unwrap()),
        vec![(uid("gitter_alice"), "from the web client".to_owned())]
    );
}

#[test]
fn text_over_4096_characters_is_refused_with_a_notice() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.say(&portal, &alice, &"x".repeat(4097));
    h.settle();
    assert!(h.gitter_timeline(&room).is_empty());
    assert!(h.last_notice(&portal).contains("4097 characters"));
    h.say(&portal, &alice, &"é".repeat(4096));
    h.settle();
    assert_eq!(h.gitter_timeline(&room).len(), 1, "4096 characters pass");
    // Gitter counts UTF-16 units (JavaScript's `length`): 2049 emoji are 4098 of them.
    h.say(&portal, &alice, &"😀".repeat(2049));
    h.settle();
    assert_eq!(h.gitter_timeline(&room).len(), 1);
    assert!(h.last_notice(&portal).contains("4098 characters"));
    h.say(&portal, &alice, &"😀".repeat(2048));
    h.settle();
    assert_eq!(h.gitter_timeline(&room).len(), 2, "2048 emoji pass");
}

#[test]
fn emote_is_sent_as_a_status_message() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.say_as(&portal, &alice, MsgType::Emote, "waves");
    h.settle();
    let m = h.gitter[&room].messages.last().unwrap();
    assert!(m.status);
    assert_eq!(m.text, "@alice waves");
}

#[test]
fn ghost_bot_and_other_users_events_are_not_bridged() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    let bot = h.bot();
    h.say(&portal, &uid("gitter_bob"), "ghost");
    h.say(&portal, &bot, "bot");
    h.say(&portal, &uid("eve"), "intruder");
    h.settle();
    assert!(h.gitter_timeline(&room).is_empty());
}

#[test]
fn failed_send_tells_the_owner_in_the_portal() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.failures
        .entry("send_gitter")
        .or_default()
        .push_back(FailureKind::Forbidden);
    h.say(&portal, &alice, "nope");
    h.settle();
    assert_eq!(
        h.last_notice(&portal),
        "Your message was not sent to Gitter: Gitter does not allow you to write in this room."
    );
}

#[test]
fn revoked_token_marks_login_invalid_and_asks_for_login() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, dm) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.failures
        .entry("send_gitter")
        .or_default()
        .push_back(FailureKind::TokenRevoked);
    h.say(&portal, &alice, "hi");
    h.settle();
    assert!(!h.store.users[&alice].login.as_ref().unwrap().valid);
    assert!(
        h.notices(&dm)
            .iter()
            .any(|n| n.contains("has expired. Log in here: http"))
    );
    h.say(&portal, &alice, "again");
    h.settle();
    assert!(h.last_notice(&portal).contains("not logged in"));
    assert!(h.streams.is_empty(), "the dead token reads nothing");
}

// ------------------------------------------------------------------ transactions

#[test]
fn transactions_are_deduplicated_by_id_and_events_by_event_id() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    let ev = h.event(
        &dm,
        &alice,
        MatrixEventKind::Message {
            msgtype: MsgType::Text,
            body: "help".into(),
            formatted_body: None,
            relation: None,
        },
    );
    let first = h.step(Input::Transaction {
        txn_id: AsTxnId::new("t1"),
        events: vec![ev.clone()],
    });
    assert_eq!(first.effects.len(), 1);
    let retry = h.step(Input::Transaction {
        txn_id: AsTxnId::new("t1"),
        events: vec![ev.clone()],
    });
    assert!(retry.effects.is_empty() && retry.changes.is_empty());
    let redelivered = h.step(Input::Transaction {
        txn_id: AsTxnId::new("t2"),
        events: vec![ev],
    });
    assert!(redelivered.effects.is_empty());
}

#[test]
fn one_odd_event_never_fails_the_transaction() {
    let mut h = Harness::new();
    let alice = uid("alice");
    let dm = h.dm_bot(&alice, &[]);
    let odd = h.event(
        &dm,
        &alice,
        MatrixEventKind::Other {
            event_type: "m.weird".into(),
        },
    );
    let unknown_room: OwnedRoomId = "!nowhere".try_into().unwrap();
    let stray = h.event(
        &unknown_room,
        &alice,
        MatrixEventKind::Member {
            target: uid("x"),
            membership: Membership::Leave,
        },
    );
    let help = h.event(
        &dm,
        &alice,
        MatrixEventKind::Message {
            msgtype: MsgType::Text,
            body: "help".into(),
            formatted_body: None,
            relation: None,
        },
    );
    let out = h.txn(vec![odd, stray, help]);
    assert_eq!(out.effects.len(), 1, "the good event is still handled");
}

#[test]
fn remembered_transaction_ids_are_bounded() {
    let mut c = config();
    c.dedupe_capacity = 3;
    let mut h = Harness::with_config(c);
    for _ in 0..10 {
        h.txn(vec![]);
    }
    assert_eq!(h.store.transactions.len(), 3);
}

#[test]
fn matrix_transaction_ids_come_from_effect_ids_and_are_unique() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "bob", "carol"]);
    h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "bob", "1");
    h.gitter_says(&room, "carol", "2");
    h.settle();
    let ids: Vec<String> = h
        .log
        .iter()
        .filter(|e| matches!(e.action, Action::Matrix(MatrixCall::SendMessage { .. })))
        .map(|e| e.id.matrix_txn_id())
        .collect();
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

// ------------------------------------------------------------------ restore

#[test]
fn restart_replays_the_outbox_and_reconciles_gitter_sends() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let portal = h.portal(&alice, &room).unwrap();
    h.say(&portal, &alice, "survives");
    // The POST reached Gitter, then the bridge crashed before recording the result.
    let send = h.pending.pop_front().unwrap();
    let Action::Gitter {
        call: GitterCall::SendMessage { text, .. },
        ..
    } = &send.action
    else {
        panic!()
    };
    h.gitter_post(&room, "alice", text);
    h.restart();
    let replay = h
        .pending
        .iter()
        .find(|e| e.id == send.id)
        .expect("the send is replayed");
    assert!(matches!(
        replay.action,
        Action::Gitter {
            call: GitterCall::SendMessage {
                reconcile: true,
                ..
            },
            ..
        }
    ));
    h.settle();
    assert_eq!(
        h.gitter_timeline(&room).len(),
        1,
        "reconciled, not sent twice"
    );
}

#[test]
fn restart_reopens_streams_and_catches_up() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    h.gitter_says(&room, "bob", "before");
    h.settle();
    h.gitter_post(&room, "bob", "while down");
    h.restart();
    h.settle();
    let bodies: Vec<_> = h
        .timeline(&h.portal(&alice, &room).unwrap())
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bodies, ["before", "while down"]);
}

#[test]
fn results_for_unknown_effects_are_reported_not_fatal() {
    let mut h = Harness::new();
    let out = h.step(Input::EffectDone {
        id: EffectId(999_999),
        result: Ok(EffectOutput::Done),
    });
    assert_eq!(
        out.warnings,
        vec![CoreError::UnknownEffect(EffectId(999_999))]
    );
}

#[test]
fn a_reader_gitter_refuses_the_room_to_hands_it_to_another_member() {
    let mut h = Harness::new();
    let room = h.add_gitter_room("org/chat", &["alice", "carol"]);
    let (alice, _) = h.logged_in_user("alice", "alice");
    let (carol, _) = h.logged_in_user("carol", "carol");
    let reader = h.store.gitter_rooms[&room].reader.clone().unwrap();
    let other = if reader == alice {
        carol.clone()
    } else {
        alice.clone()
    };
    // The reader left the room on Gitter while the bridge was down: its stream is refused,
    // and the adapter does not reconnect after a refusal.
    h.streams.remove(&room);
    h.step(Input::StreamDisconnected {
        room: room.clone(),
        reason: FailureKind::Forbidden,
    });
    h.settle();
    assert_eq!(h.store.gitter_rooms[&room].reader.as_ref(), Some(&other));
    h.gitter_says(&room, "bob", "still read");
    h.settle();
    let portal = h.portal(&other, &room).unwrap();
    assert!(h.bodies(&portal).contains(&"still read".to_owned()));
}
