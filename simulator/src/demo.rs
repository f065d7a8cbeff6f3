//! `bridge-sim demo`: the user journey of the original README, end to end, with a transcript.
//!
//! Both fakes and the real bridge runtime run in this process, with a redb file in a
//! temporary directory. Alice, a Matrix user, talks to the bot, logs in to Gitter, gets her
//! rooms, chats both ways with Bob on Gitter, and uses every command. Each step waits (bounded)
//! for what a person would see; the first one that does not happen fails the demo.

use std::time::Instant;

use crate::fake_hs::Human;
use crate::world::{WAIT, World, WorldError, WorldOptions};

const LOBBY: &str = "gitter-bridge/lobby";
const DEV: &str = "gitter-bridge/dev";
const SANDBOX: &str = "gitter-bridge/sandbox";

struct Transcript {
    started: Instant,
}

impl Transcript {
    fn line(&self, who: &str, text: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        let mut lines = text.lines();
        println!("[{secs:6.2}s] {who:<22} {}", lines.next().unwrap_or(""));
        for more in lines {
            println!("{:10}{:<22} {more}", "", "");
        }
    }

    fn section(&self, title: &str) {
        println!("\n== {title}");
    }
}

/// Runs the demo; `Err` names the step that failed.
pub async fn run(options: WorldOptions) -> Result<(), WorldError> {
    let t = Transcript {
        started: Instant::now(),
    };
    t.section("Starting the fake homeserver, the fake Gitter and the bridge");
    let world = World::start(options).await?;
    t.line("bridge", &format!("AS API on {}", world.as_addr));
    t.line("bridge", &format!("login pages on {}", world.public_url()));
    t.line("bridge", &format!("redb store in {}", world.dir.display()));
    let result = journey(&world, &t).await;
    world.shutdown().await;
    match &result {
        Ok(()) => println!("\ndemo: OK ({:.1}s)", t.started.elapsed().as_secs_f64()),
        Err(e) => println!("\ndemo: FAILED: {e}"),
    }
    result
}

async fn journey(w: &World, t: &Transcript) -> Result<(), WorldError> {
    let bot = w.bot();
    let alice = w.human("alice")?;
    let me = "alice (Matrix)";

    t.section("Alice starts a chat with the bot");
    t.line(me, &format!("creates a DM with {bot}"));
    let dm = w.open_dm(&alice).await?;
    for n in w.bot_notices(&alice, &dm) {
        t.line(&bot, &n);
    }

    t.section("She logs in to Gitter");
    let seen = w.bot_notices(&alice, &dm).len();
    t.line(me, "login");
    w.say(&alice, &dm, "login")?;
    let notice = w.wait_notice(&alice, &dm, "/login/", seen).await?;
    t.line(&bot, &notice);
    let link = crate::world::login_link(&notice)
        .ok_or_else(|| WorldError::Step("no login link in the notice".into()))?;
    t.line("browser", "opens the link, signs in to Gitter as alice");
    let page = w.follow_login_link(&link, "alice").await?;
    t.line("browser", &format!("page: {}", page_text(&page)));
    let notice = w
        .wait_notice(&alice, &dm, "You are now logged in", seen)
        .await?;
    t.line(&bot, &notice);

    t.section("The bot invites her to her Gitter rooms");
    w.wait_hs("invites to the lobby and dev portals", WAIT, |_| {
        w.portal_named(&alice, LOBBY).is_some() && w.portal_named(&alice, DEV).is_some()
    })
    .await?;
    for room in w.accept_invites(&alice)? {
        let name = room_name(w, &room);
        t.line(me, &format!("accepts the invite to {name}"));
    }
    let lobby = w
        .portal_named(&alice, LOBBY)
        .ok_or_else(|| WorldError::Step("no lobby portal".into()))?;
    wait_listening(w, LOBBY).await?;

    t.section("Bob writes on Gitter; Alice answers from Matrix");
    let bob_ghost = format!("@gitter_bob:{}", w.hs.server_name());
    let text = "Hi Alice! Does the bridge keep `code` formatting?";
    t.line("bob (Gitter)", text);
    w.gitter
        .post_message(LOBBY, "bob", text)
        .map_err(|e| WorldError::Step(format!("Gitter post: {e:?}")))?;
    wait_message(w, &alice, &lobby, &bob_ghost, text).await?;
    let shown = w
        .messages_from_others(&alice, &lobby)
        .into_iter()
        .find(|m| m.body.as_deref() == Some(text))
        .map(|m| m.content)
        .unwrap_or_default();
    t.line(
        &format!("{bob_ghost} ({})", display_name(w, &bob_ghost)),
        &format!(
            "{} [html: {}]",
            shown["body"].as_str().unwrap_or(""),
            shown["formatted_body"].as_str().unwrap_or("-")
        ),
    );
    let reply = "It does, and this reply went out as my own Gitter user.";
    t.line(me, reply);
    w.say(&alice, &lobby, reply)?;
    w.wait_gitter("alice's reply on Gitter", WAIT, |_| {
        w.gitter_texts_from(LOBBY, "alice")
            .iter()
            .any(|m| m == reply)
    })
    .await?;
    t.line("Gitter room", &format!("alice: {reply}"));
    let alice_ghost = format!("@gitter_alice:{}", w.hs.server_name());
    if w.messages_from_others(&alice, &lobby)
        .iter()
        .any(|m| m.sender == alice_ghost)
    {
        return Err(WorldError::Step("alice's message echoed back".into()));
    }
    t.line("check", "no echo of alice's own message in her portal");

    t.section("Commands");
    command(w, t, &alice, &dm, "list", "Your Gitter rooms").await?;
    command(
        w,
        t,
        &alice,
        &dm,
        &format!("join {SANDBOX}"),
        &format!("Joined {SANDBOX}"),
    )
    .await?;
    w.wait_hs("the sandbox portal", WAIT, |_| {
        w.portal_named(&alice, SANDBOX).is_some()
    })
    .await?;
    w.accept_invites(&alice)?;
    t.line(me, &format!("accepts the invite to {SANDBOX}"));
    command(
        w,
        t,
        &alice,
        &dm,
        &format!("leave {DEV}"),
        &format!("Left {DEV}"),
    )
    .await?;
    t.line(me, "leaves the lobby portal in her Matrix client");
    w.hs.leave(&alice.user_id, &lobby)
        .map_err(|e| WorldError::Step(format!("leave: {e:?}")))?;
    command(w, t, &alice, &dm, &format!("invite {LOBBY}"), LOBBY).await?;
    w.wait_hs("a new invite to the lobby", WAIT, |_| {
        !w.hs.invites_of(&alice.user_id).is_empty()
    })
    .await?;
    t.line(&bot, "(invites her to the lobby portal again)");
    w.accept_invites(&alice)?;
    command(w, t, &alice, &dm, "whoami", "logged in to Gitter as alice").await?;
    command(w, t, &alice, &dm, "logout", "").await?;
    command(w, t, &alice, &dm, "whoami", "not logged in").await?;
    Ok(())
}

/// Sends a command and prints the bot's answer (waiting for one containing `expect`).
async fn command(
    w: &World,
    t: &Transcript,
    human: &Human,
    dm: &str,
    text: &str,
    expect: &str,
) -> Result<(), WorldError> {
    let seen = w.bot_notices(human, dm).len();
    t.line("alice (Matrix)", text);
    w.say(human, dm, text)?;
    let answer = w.wait_notice(human, dm, expect, seen).await?;
    t.line(&w.bot(), &answer);
    Ok(())
}

async fn wait_message(
    w: &World,
    human: &Human,
    room: &str,
    sender: &str,
    body: &str,
) -> Result<(), WorldError> {
    w.wait_hs(&format!("{sender}'s message {body:?}"), WAIT, |_| {
        w.messages_from_others(human, room)
            .iter()
            .any(|m| m.sender == sender && m.body.as_deref() == Some(body))
    })
    .await
}

/// The bridge treats messages older than its first read of a room as history; wait until it
/// listens to the room before Gitter users talk.
pub async fn wait_listening(w: &World, room: &str) -> Result<(), WorldError> {
    w.wait_gitter(&format!("the bridge listening to {room}"), WAIT, |g| {
        g.is_read(room)
    })
    .await
}

fn room_name(w: &World, room: &str) -> String {
    w.hs.with_state(|s| s.room_name(room))
        .unwrap_or_else(|| room.to_owned())
}

fn display_name(w: &World, user: &str) -> String {
    w.hs.with_state(|s| s.profile(user).ok())
        .and_then(|p| p["displayname"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The visible text of a small HTML page's body.
fn page_text(html: &str) -> String {
    let body = html
        .split_once("<body>")
        .and_then(|(_, rest)| rest.split_once("</body>"))
        .map_or(html, |(body, _)| body);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
