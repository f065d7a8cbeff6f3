//! `GitterClient::execute`: each core action becomes the right request, and its answer the
//! right `EffectOutput` or `Failure`.

mod common;

use common::*;
use gitter_bridge_core::{
    Action, EffectOutput, FailureKind, GitterCall, GitterMessageId, GitterRoomId, GitterUserId,
    MatrixCall, OwnedUserId, Secret, StreamCall,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn alice() -> OwnedUserId {
    "@alice:example.org".try_into().unwrap()
}

const ROOM: &str = "5787e94cc2f0db084a230583";
const AUTHOR: &str = "5f9ab228d73408ce4ff2c66c";

fn send(text: &str, reconcile: bool, after: Option<&str>) -> Action {
    Action::Gitter {
        token: token(),
        call: GitterCall::SendMessage {
            gitter_user: GitterUserId::new(AUTHOR),
            room: GitterRoomId::new(ROOM),
            text: text.to_owned(),
            status: false,
            reconcile,
            after: after.map(GitterMessageId::new),
            parent: None,
        },
    }
}

fn chat_path() -> String {
    format!("/v1/rooms/{ROOM}/chatMessages")
}

#[tokio::test]
async fn get_gitter_user_returns_the_tokens_user() {
    let (server, client) = gitter().await;
    Mock::given(path("/v1/user/me"))
        .respond_with(ok_fixture("user-captured.json"))
        .mount(&server)
        .await;

    let out = client
        .execute(&Action::Gitter {
            token: token(),
            call: GitterCall::CurrentUser,
        })
        .await
        .unwrap();

    let EffectOutput::GitterUser(user) = out else {
        panic!("{out:?}")
    };
    assert_eq!(user.username, "RatakondalaArun");
    assert_eq!(user.display_name, "Ratakondala Arun");
}

#[tokio::test]
async fn list_rooms_returns_every_listed_room() {
    let (server, client) = gitter().await;
    Mock::given(path("/v1/user/me/rooms"))
        .respond_with(ok_fixture("rooms.json"))
        .mount(&server)
        .await;

    let out = client
        .execute(&Action::Gitter {
            token: token(),
            call: GitterCall::ListRooms,
        })
        .await
        .unwrap();

    let EffectOutput::GitterRooms(rooms) = out else {
        panic!("{out:?}")
    };
    assert_eq!(rooms.len(), 2);
}

#[tokio::test]
async fn resolve_join_and_leave_map_to_their_endpoints() {
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path("/v1/rooms"))
        .respond_with(ok_fixture("room.json"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/user/{AUTHOR}/rooms")))
        .respond_with(ok_fixture("room.json"))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v1/rooms/{ROOM}/users/{AUTHOR}")))
        .respond_with(ok_fixture("success.json"))
        .mount(&server)
        .await;

    let resolved = client
        .execute(&Action::Gitter {
            token: token(),
            call: GitterCall::ResolveRoom {
                uri: "dart-lang/sdk".into(),
            },
        })
        .await
        .unwrap();
    let joined = client
        .execute(&Action::Gitter {
            token: token(),
            call: GitterCall::JoinRoom {
                gitter_user: GitterUserId::new(AUTHOR),
                room: GitterRoomId::new(ROOM),
            },
        })
        .await
        .unwrap();
    let left = client
        .execute(&Action::Gitter {
            token: token(),
            call: GitterCall::LeaveRoom {
                gitter_user: GitterUserId::new(AUTHOR),
                room: GitterRoomId::new(ROOM),
            },
        })
        .await
        .unwrap();

    assert!(matches!(resolved, EffectOutput::GitterRoom(ref r) if r.id.as_str() == ROOM));
    assert!(matches!(joined, EffectOutput::GitterRoom(_)));
    assert_eq!(left, EffectOutput::Done);
    let reqs = requests(&server).await;
    assert_request(
        &reqs[0],
        "POST",
        "/v1/rooms",
        Some(json!({"uri": "dart-lang/sdk"})),
    );
    assert_request(
        &reqs[1],
        "POST",
        &format!("/v1/user/{AUTHOR}/rooms"),
        Some(json!({"id": ROOM})),
    );
    assert_request(
        &reqs[2],
        "DELETE",
        &format!("/v1/rooms/{ROOM}/users/{AUTHOR}"),
        None,
    );
}

#[tokio::test]
async fn room_members_become_gitter_users() {
    let (server, client) = gitter().await;
    Mock::given(path(format!("/v1/rooms/{ROOM}/users")))
        .respond_with(ok_fixture("room-members.json"))
        .mount(&server)
        .await;

    let out = client
        .execute(&Action::Gitter {
            token: token(),
            call: GitterCall::RoomMembers {
                room: GitterRoomId::new(ROOM),
            },
        })
        .await
        .unwrap();

    let EffectOutput::GitterUsers(users) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        users
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["malditogeek", "suprememoocow"]
    );
}

#[tokio::test]
async fn fetch_without_a_cursor_asks_for_the_newest_page() {
    let (server, client) = gitter().await;
    let page = json!([
        fixture_json("message-plain.json"),
        fixture_json("message-status.json")
    ]);
    Mock::given(path(chat_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;

    let out = client
        .execute(&Action::Gitter {
            token: token(),
            call: GitterCall::FetchMessages {
                room: GitterRoomId::new(ROOM),
                after: None,
                limit: 30,
            },
        })
        .await
        .unwrap();

    let req = only_request(&server).await;
    assert_eq!(query(&req, "afterId"), None);
    assert_eq!(query(&req, "limit").as_deref(), Some("30"));
    let EffectOutput::GitterMessages(msgs) = out else {
        panic!("{out:?}")
    };
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].status);
}

#[tokio::test]
async fn fetch_after_a_cursor_sends_after_id() {
    let (server, client) = gitter().await;
    Mock::given(path(chat_path()))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;

    let out = client
        .execute(&Action::Gitter {
            token: token(),
            call: GitterCall::FetchMessages {
                room: GitterRoomId::new(ROOM),
                after: Some(GitterMessageId::new("5fedc44197312f4b6bfe4519")),
                limit: 100,
            },
        })
        .await
        .unwrap();

    assert_eq!(out, EffectOutput::GitterMessages(vec![]));
    let req = only_request(&server).await;
    assert_eq!(
        query(&req, "afterId").as_deref(),
        Some("5fedc44197312f4b6bfe4519")
    );
    // Thread replies are asked for: without it a catch-up misses them (§3.6).
    assert_eq!(query(&req, "includeThreads").as_deref(), Some("true"));
}

#[tokio::test]
async fn a_plain_send_posts_once() {
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path(chat_path()))
        .respond_with(ok_fixture("message-plain.json"))
        .mount(&server)
        .await;

    let out = client.execute(&send("hello", false, None)).await.unwrap();

    let EffectOutput::GitterMessage(m) = out else {
        panic!("{out:?}")
    };
    assert_eq!(m.id.as_str(), "5fedc44197312f4b6bfe4519");
    assert_request(
        &only_request(&server).await,
        "POST",
        &chat_path(),
        Some(json!({"text": "hello"})),
    );
}

#[tokio::test]
async fn a_send_whose_answer_is_lost_fails_transient_and_is_not_posted_again() {
    // The core reconciles against the room's recent messages before any new attempt; the
    // adapter must not guess (issue 12: one lost answer gave two copies on Gitter).
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path(chat_path()))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(chat_path()))
        .respond_with(ok_fixture("message-plain.json"))
        .mount(&server)
        .await;

    let failure = client
        .execute(&send("hello", false, None))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Transient);
    assert_eq!(requests(&server).await.len(), 1, "posted exactly once");
}

/// A room whose recent history holds message-plain.json, and that would accept a new post.
async fn room_with_history() -> (wiremock::MockServer, gitter_bridge_gitter::GitterClient) {
    let (server, client) = gitter().await;
    let history = json!([
        fixture_json("message-sent-2014.json"),
        fixture_json("message-plain.json")
    ]);
    Mock::given(method("GET"))
        .and(path(chat_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(history))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(chat_path()))
        .respond_with(ok_fixture("message-status.json"))
        .mount(&server)
        .await;
    (server, client)
}

fn plain_text() -> String {
    fixture_json("message-plain.json")["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_reconciling_send_only_reads_and_returns_the_authors_messages() {
    let (server, client) = room_with_history().await;

    let out = client
        .execute(&send(&plain_text(), true, None))
        .await
        .unwrap();

    let EffectOutput::Reconciled { mine, newest } = out else {
        panic!("{out:?}")
    };
    assert!(
        mine.iter().all(|m| m.from.id.as_str() == AUTHOR),
        "only the author's messages: {mine:?}"
    );
    assert!(mine.iter().any(|m| m.text == plain_text()));
    assert!(newest.is_some(), "the newest message read is reported");
    let reqs = requests(&server).await;
    assert_eq!(
        reqs.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["GET"],
        "nothing is posted while the outcome of the last try is unknown"
    );
}

#[tokio::test]
async fn a_reconcile_that_cannot_reach_the_end_of_the_room_fails_instead_of_saying_not_found() {
    // Every page is full: the room has more new messages than the reconcile pages through.
    // Answering "not found" from that partial view would post the message a second time.
    let (server, client) = gitter().await;
    let page: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            let mut m = fixture_json("message-plain.json");
            m["id"] = json!(format!("5fedc44197312f4b6bf{i:05}"));
            m["text"] = json!("someone else");
            m
        })
        .collect();
    Mock::given(method("GET"))
        .and(path(chat_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(page)))
        .mount(&server)
        .await;

    let failure = client
        .execute(&send(&plain_text(), true, Some("5f8e0d2bd2f2c5e1cd000001")))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(
        requests(&server)
            .await
            .iter()
            .all(|r| r.method.as_str() == "GET"),
        "nothing posted"
    );
}

#[tokio::test]
async fn a_reconciling_send_reads_after_the_cursor_it_was_sent_at() {
    let (server, client) = room_with_history().await;
    client
        .execute(&send(&plain_text(), true, Some("5f8e0d2bd2f2c5e1cd000001")))
        .await
        .unwrap();
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 1);
    let query = reqs[0].url.query().unwrap_or_default().to_owned();
    assert!(
        query.contains("afterId=5f8e0d2bd2f2c5e1cd000001"),
        "{query}"
    );
}

#[tokio::test]
async fn failures_carry_the_kind_and_never_the_token() {
    let (server, client) = gitter().await;
    // A server that echoes what it got, token included.
    Mock::given(path(chat_path()))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": format!("Unauthorized: Bearer {TOKEN}")})),
        )
        .mount(&server)
        .await;

    let failure = client
        .execute(&send("hello", false, None))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::TokenRevoked);
    assert!(!failure.message.contains(TOKEN), "{}", failure.message);
    assert!(failure.message.contains("401"));
}

#[tokio::test]
async fn stream_and_matrix_actions_are_refused_as_misrouted() {
    let (server, client) = gitter().await;
    let open = Action::Stream(StreamCall::Open {
        room: GitterRoomId::new(ROOM),
        token: Secret::new(TOKEN),
    });
    let register = Action::Matrix(MatrixCall::RegisterGhost { user: alice() });

    for action in [open, register] {
        let failure = client.execute(&action).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Rejected);
    }
    assert!(requests(&server).await.is_empty());
}

/// Log lines written while a test runs, at every level.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_log_line_carries_the_token_even_when_gitter_echoes_it() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (server, client) = gitter().await;
    let echo = json!({"error": format!("boom for {TOKEN}")});
    Mock::given(path(chat_path()))
        .respond_with(ResponseTemplate::new(503).set_body_json(echo))
        .mount(&server)
        .await;

    // A post whose outcome is unknown is not repeated; a read is retried: both are logged.
    let failure = client
        .execute(&send("hello", false, None))
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient);
    let fetch = Action::Gitter {
        token: token(),
        call: GitterCall::FetchMessages {
            room: GitterRoomId::new(ROOM),
            after: None,
            limit: 10,
        },
    };
    let failure = client.execute(&fetch).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient);

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("not retrying a Gitter write whose outcome is unknown"),
        "the unrepeated post is logged:\n{logs}"
    );
    assert!(
        logs.contains("retrying Gitter request"),
        "retries are logged:\n{logs}"
    );
    assert!(!logs.contains(TOKEN), "token in logs:\n{logs}");
}
