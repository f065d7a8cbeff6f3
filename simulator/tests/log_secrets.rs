//! No secret in any log line (issue 13): the whole bridge, in-process against the fakes, at
//! TRACE for every target (its own, and hyper's, reqwest's, axum's, redb's...), through a
//! login, messages both ways and failures; then no Gitter token, OAuth code, OAuth state,
//! login-link token, OAuth client secret, as_token or hs_token may appear in what was logged.
//!
//! The subscriber is the process's global one, so this file holds one test: its test binary
//! is a process of its own and logs nothing else. Only the simulator's own targets (the fakes,
//! which are not the bridge) are left out.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitter_bridge_sim::world::{WAIT, World, WorldOptions, login_link};
use tracing_subscriber::fmt::format::FmtSpan;

const LOBBY: &str = "gitter-bridge/lobby";

/// Everything logged, as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("expected a redirect, got HTTP {}", r.status()))
        .to_owned()
}

/// The value a `Set-Cookie` of the answer gives cookie `name`.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The value of the hidden form field `name` in a page.
fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let len = page[start..].find('"')?;
    Some(page[start..start + len].to_owned())
}

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_at_trace() {
    let capture = Capture::default();
    let writer = capture.clone();
    // `try_init` also routes the `log` records of dependencies (reqwest, ...) here, as the
    // binary's logging does.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,gitter_bridge_sim=off",
        ))
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this process");

    let mut w = World::start(WorldOptions::default())
        .await
        .expect("the world starts");
    let config = w.config().unwrap();
    let mut secrets: Vec<(&str, String)> = vec![
        ("as_token", config.as_token.expose().to_owned()),
        ("hs_token", config.hs_token.expose().to_owned()),
        (
            "OAuth client secret",
            config.client_secret.expose().to_owned(),
        ),
    ];

    // The login, step by step like a browser, keeping every secret on the way.
    let alice = w.human("alice").unwrap();
    let dm = w.open_dm(&alice).await.unwrap();
    w.say(&alice, &dm, "login").unwrap();
    let notice = w.wait_notice(&alice, &dm, "/login/", 0).await.unwrap();
    let link = login_link(&notice).expect("a login link");
    let link_token = link.rsplit('/').next().unwrap().to_owned();
    // The confirm page: its CSRF token comes as a hidden field and a cookie.
    let r = w.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csrf_cookie = set_cookie(&r, "gb_csrf").expect("the CSRF cookie");
    let page = r.text().await.unwrap();
    let csrf = hidden_field(&page, "csrf").expect("the confirm button's form");
    let r = w
        .http
        .post(&link)
        .form(&[("csrf", csrf.as_str())])
        .header(reqwest::header::COOKIE, format!("gb_csrf={csrf_cookie}"))
        .send()
        .await
        .unwrap();
    let browser = set_cookie(&r, "gb_oauth").expect("the browser's OAuth cookie");
    let authorize = location(&r);
    let state = query_param(&authorize, "state");
    let r = w
        .http
        .get(format!("{authorize}&login_as=alice"))
        .send()
        .await
        .unwrap();
    let callback = location(&r);
    let code = query_param(&callback, "code");
    assert_eq!(query_param(&callback, "state"), state);
    let oauth_cookie = format!("gb_oauth={browser}");
    let page = w
        .http
        .get(&callback)
        .header(reqwest::header::COOKIE, &oauth_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("is now linked to the Matrix account"),
        "{page}"
    );
    w.wait_notice(&alice, &dm, "You are now logged in", 0)
        .await
        .unwrap();
    let gitter_token = w.gitter.token_for("alice").expect("alice's token");
    secrets.extend([
        ("login-link token", link_token),
        ("CSRF token", csrf),
        ("CSRF cookie", csrf_cookie),
        ("browser's OAuth cookie", browser),
        ("OAuth state", state),
        ("OAuth code", code),
        ("Gitter token", gitter_token.clone()),
    ]);

    // A spent link and a replayed callback: refusals are logged, the secrets in them are not.
    let r = w.http.get(&link).send().await.unwrap();
    assert!(!r.status().is_redirection());
    let r = w
        .http
        .get(&callback)
        .header(reqwest::header::COOKIE, &oauth_cookie)
        .send()
        .await
        .unwrap();
    assert!(!r.status().is_redirection());

    // Messages both ways.
    w.wait_hs("a portal invite for the lobby", WAIT, |_| {
        w.portal_named(&alice, LOBBY).is_some()
    })
    .await
    .unwrap();
    w.accept_invites(&alice).unwrap();
    let portal = w.portal_named(&alice, LOBBY).unwrap();
    // Gitter -> Matrix, through the stream. A message posted right after the portal opens is
    // sometimes never bridged (about 1 run in 20, seen in simulator/tests/runtime.rs too, with
    // or without this test's changes; not a logging matter, reported apart): post again.
    let mut arrived = false;
    for n in 1..=4 {
        let text = format!("hello from Gitter {n}");
        w.gitter.post_message(LOBBY, "bob", &text).unwrap();
        let seen = w
            .wait_hs("bob's message", Duration::from_secs(5), |_| {
                w.messages_from_others(&alice, &portal)
                    .iter()
                    .any(|m| m.body.as_deref() == Some(text.as_str()))
            })
            .await;
        if seen.is_ok() {
            arrived = true;
            break;
        }
    }
    assert!(arrived, "no message of bob's reached alice's portal");

    // Failures: Gitter answering 500 to a send (retried), then the token revoked (the send
    // fails for good and alice is logged out), and the homeserver refusing a push.
    w.gitter.fail_next(2, 500);
    w.say(&alice, &portal, "sent through an outage").unwrap();
    w.wait_gitter("the send after the outage", WAIT, |_| {
        w.gitter_texts_from(LOBBY, "alice")
            .contains(&"sent through an outage".to_owned())
    })
    .await
    .unwrap();
    w.hs.fail_push_next(1);
    assert!(w.gitter.revoke_token(&gitter_token));
    w.say(&alice, &portal, "sent with a revoked token").unwrap();
    w.wait_notice(&alice, &dm, "Gitter rejected your login", 0)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.stop_bridge().await.unwrap();

    let log = capture.text();
    // The capture works and holds the bridge's own lines and its dependencies' at trace.
    for target in ["gitter_bridge", "hyper", "reqwest"] {
        assert!(
            log.contains(&format!(" {target}")),
            "nothing from {target} was captured"
        );
    }
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        assert!(
            secret.len() >= 8,
            "{what} is too short to search for: {secret:?}"
        );
        for line in log.lines().filter(|l| l.contains(secret.as_str())) {
            leaks.push(format!("{what}: {line}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in {} log lines:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    w.shutdown().await;
}
