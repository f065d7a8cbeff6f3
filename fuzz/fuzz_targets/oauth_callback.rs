//! The login page's `/oauth/callback?code&state&error` (adapters/bridge/src/web.rs). The
//! handler is private to the binary crate; it takes the query with axum's
//! `Query<HashMap<String, String>>`, the browser's OAuth-state cookie from the headers, and
//! hands both to the core as `Input::OAuthCallback`. This target does the same: the fuzzed
//! bytes are the query string, parsed by that extractor, then answered by a bridge in which
//! Bob has just opened and confirmed his login link (so a login is pending). A `state` of
//! `STATE` is replaced by the pending login's real state, so the corpus reaches the path
//! past the state check. The first byte picks the cookie: the confirming browser's state,
//! none, or whatever `state` the query carries.
//!
//! Checked: no panic; the change sets rebuild the bridge's state; the request is answered at
//! once, or an effect (the code exchange) is under way to answer it later.
#![no_main]

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::Uri;
use gitter_bridge_core::{Input, RequestId, Secret, WebReply};
use gitter_bridge_fuzz::{Restored, world};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cookie, query)) = data.split_first() else {
        return;
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    // What hyper would refuse before any handler runs is out of scope.
    let Ok(uri) = format!("/oauth/callback?{query}").parse::<Uri>() else {
        return;
    };
    let Ok(Query(mut params)) = Query::<HashMap<String, String>>::try_from_uri(&uri) else {
        return;
    };

    let w = world();
    let mut r = Restored::new(w);
    r.step(Input::LoginLinkOpened {
        request: RequestId(1),
        token: w.bob_token.clone(),
    });
    let confirmed = r.step(Input::LoginLinkConfirmed {
        request: RequestId(2),
        token: w.bob_token.clone(),
    });
    let pending = confirmed.replies.iter().find_map(|(_, reply)| match reply {
        WebReply::OAuthRedirect { state, .. } => Some(state.clone()),
        _ => None,
    });
    assert!(pending.is_some(), "no redirect to Gitter: {confirmed:?}");
    let mut state = params.remove("state");
    if state.as_deref() == Some("STATE") {
        state = pending.clone();
    }
    let browser = match cookie % 3 {
        0 => pending,
        1 => None,
        _ => state.clone(),
    };
    let request = RequestId(3);
    let out = r.step(Input::OAuthCallback {
        request,
        code: params.remove("code").map(Secret::new),
        state,
        error: params.remove("error"),
        browser,
    });
    let answered = out.replies.iter().any(|(r, _)| *r == request);
    assert!(
        answered || !out.effects.is_empty(),
        "the callback {query:?} is neither answered nor under way: {out:?}"
    );
});
