//! The registration file: generated, read back, and checked against the config.

use gitter_bridge_core::Secret;
use gitter_bridge_matrix::{
    AsServerConfig, Registration, RegistrationError, RegistrationParams, generate_token,
    token_from_bytes, user_namespace_regexes,
};

use crate::helpers::*;

fn params() -> RegistrationParams {
    RegistrationParams {
        id: "gitter".to_owned(),
        url: "http://127.0.0.1:29321".to_owned(),
        server_name: SERVER_NAME.to_owned(),
        bot_localpart: "gitterbot".to_owned(),
        ghost_template: "gitter_{username}".to_owned(),
        as_token: Secret::new(AS_TOKEN),
        hs_token: Secret::new(HS_TOKEN),
    }
}

fn mismatched_keys(err: RegistrationError) -> Vec<String> {
    match err {
        RegistrationError::Disagrees(list) => list.into_iter().map(|m| m.key).collect(),
        other => panic!("expected a disagreement, got {other}"),
    }
}

#[test]
fn a_generated_registration_round_trips_through_yaml() {
    let registration = Registration::generate(&params()).unwrap();
    let yaml = registration.to_yaml();
    assert!(yaml.contains("rate_limited: false"), "{yaml}");
    assert!(yaml.contains("receive_ephemeral: false"), "{yaml}");
    let read = Registration::from_yaml(&yaml).unwrap();
    assert_eq!(read, registration);
    assert!(read.check(&params()).is_ok());
}

#[test]
fn the_user_namespace_covers_the_bot_and_ghosts_and_nothing_else() {
    let registration = Registration::generate(&params()).unwrap();
    assert!(registration.namespaces.users.iter().all(|n| n.exclusive));
    let regexes = registration.user_regexes().unwrap();
    let covered = |u: &str| regexes.iter().any(|(_, r)| r.is_match(u));
    for yes in [BOT, GHOST, "@gitter_a.b-c=d/e:example.org"] {
        assert!(covered(yes), "{yes} should be covered");
    }
    for no in [
        ALICE,
        "@gitter_:example.org",
        "@gitterbot2:example.org",
        "@gitter_bob:exampleXorg",
        "@gitter_bob:example.org.evil.com",
        "@xgitter_bob:example.org",
        "@gitter_bob:other.org",
    ] {
        assert!(!covered(no), "{no} should not be covered");
    }
}

#[test]
fn ghost_templates_that_would_claim_everyone_are_refused() {
    for template in ["{username}", "gitter", "{username}_{username}"] {
        let err = user_namespace_regexes(SERVER_NAME, "gitterbot", template).unwrap_err();
        assert!(
            matches!(err, RegistrationError::BadTemplate { .. }),
            "{template}"
        );
    }
    let [_, suffix] =
        user_namespace_regexes(SERVER_NAME, "gitterbot", "{username}.gitter").unwrap();
    assert!(
        regex::Regex::new(&suffix)
            .unwrap()
            .is_match("@bob.gitter:example.org")
    );
}

#[test]
fn every_disagreement_names_its_key_and_never_a_token() {
    let mut registration = Registration::generate(&params()).unwrap();
    registration.id = "other".to_owned();
    registration.url = Some("http://10.0.0.1:1".to_owned());
    registration.as_token = Secret::new("as_token_from_file_AAAAAAA");
    registration.hs_token = Secret::new("hs_token_from_file_BBBBBBB");
    registration.sender_localpart = "_gitter_bot".to_owned();
    registration
        .namespaces
        .users
        .retain(|n| !n.regex.contains("gitter_"));
    let err = registration.check(&params()).unwrap_err();
    let text = err.to_string();
    for secret in [AS_TOKEN, HS_TOKEN, "AAAAAAA", "BBBBBBB"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert_eq!(
        mismatched_keys(err),
        [
            "id",
            "url",
            "as_token",
            "hs_token",
            "sender_localpart",
            "namespaces.users"
        ]
    );
}

#[test]
fn a_null_url_and_a_broken_regex_are_reported() {
    let mut registration = Registration::generate(&params()).unwrap();
    registration.url = None;
    registration.namespaces.users[0].regex = "@(unclosed".to_owned();
    let keys = mismatched_keys(registration.check(&params()).unwrap_err());
    assert_eq!(keys, ["url", "namespaces.users[0].regex"]);
}

#[test]
fn a_hand_written_synapse_registration_is_read() {
    // The file that Synapse 1.163.2 accepted in the reference notes, in its `_gitter_` naming.
    let yaml = r##"
id: gitter
url: "http://127.0.0.1:29321"
as_token: "as_token_test_0123456789"
hs_token: "hs_token_test_0123456789"
sender_localpart: "_gitter_bot"
rate_limited: false
de.sorunome.msc2409.push_ephemeral: true
namespaces:
  users:   [{exclusive: true, regex: "@_gitter_.*:localhost"}]
  aliases: [{exclusive: true, regex: "#_gitter_.*:localhost"}]
  rooms: []
protocols: ["gitter"]
"##;
    let registration = Registration::from_yaml(yaml).unwrap();
    assert!(registration.receive_ephemeral);
    assert_eq!(registration.rate_limited, Some(false));
    let params = RegistrationParams {
        server_name: "localhost".to_owned(),
        bot_localpart: "_gitter_bot".to_owned(),
        ghost_template: "_gitter_{username}".to_owned(),
        ..params()
    };
    assert!(registration.check(&params).is_ok());
    let server = AsServerConfig::from_registration(&registration, "localhost").unwrap();
    assert_eq!(server.bot.as_str(), "@_gitter_bot:localhost");
}

#[test]
fn a_broken_file_is_refused_without_echoing_its_secrets() {
    let yaml = "id: gitter\nas_token: \"secret_value_123\"\nhs_token: [unclosed\n";
    let err = Registration::from_yaml(yaml).unwrap_err();
    assert!(matches!(err, RegistrationError::Parse(_)));
    assert!(!err.to_string().contains("secret_value_123"), "{err}");
}

#[test]
fn tokens_are_long_random_and_distinct() {
    let a = generate_token().unwrap();
    let b = generate_token().unwrap();
    assert_eq!(a.expose().len(), 64);
    assert_ne!(a, b);
    assert_eq!(token_from_bytes(&[0, 1, 0xab]).expose(), "0001ab");
}
