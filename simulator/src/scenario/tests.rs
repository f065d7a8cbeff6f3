//! The format's own tests: bounds, typos, ambiguities, transcript text.

use super::*;

#[test]
fn steps_are_actions_or_expectations_with_bounds() {
    let s = Scenario::parse(
        r#"
name = "x"
description = "y"

[[step]]
do = "say"
user = "alice"
text = "help"

[[step]]
expect = "notice"
user = "alice"
contains = "Commands"
within_ms = 1500

[[step]]
do = "kill_bridge"
"#,
    )
    .unwrap();
    assert_eq!(s.steps.len(), 3);
    assert!(matches!(
        &s.steps[0],
        Step::Do(Action::Say { room: None, .. })
    ));
    match &s.steps[1] {
        Step::Expect(e) => assert_eq!(e.within, Duration::from_millis(1500)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&s.steps[2], Step::Do(Action::KillBridge)));
}

#[test]
fn typos_and_ambiguities_are_refused_with_the_culprit_named() {
    let base = "name = \"x\"\ndescription = \"y\"\n[[step]]\n";
    let e =
        Scenario::parse(&format!("{base}do = \"say\"\nuser = \"a\"\ntxt = \"hi\"\n")).unwrap_err();
    assert!(e.contains("txt"), "{e}");
    let e = Scenario::parse(&format!("{base}do = \"dance\"\n")).unwrap_err();
    assert!(e.contains("dance"), "{e}");
    let e = Scenario::parse(&format!("{base}user = \"a\"\n")).unwrap_err();
    assert!(e.contains("do = "), "{e}");
    let e = Scenario::parse(&format!(
        "{base}do = \"gitter_fail\"\nstatus = 429\nnext = 1\nfor_ms = 5\n"
    ))
    .unwrap_err();
    assert!(e.contains("exactly one"), "{e}");
    let e = Scenario::parse(&format!(
        "{base}expect = \"bridge_up\"\nwithin_ms = \"soon\"\n"
    ))
    .unwrap_err();
    assert!(e.contains("within_ms"), "{e}");
    let e = Scenario::parse("name = \"x\"\ndescription = \"y\"\n").unwrap_err();
    assert!(e.contains("no `[[step]]`"), "{e}");
}

#[test]
fn pages_read_as_their_words() {
    let html = "<!DOCTYPE html><html><head><title>T</title><style>body{x:y}</style></head>\
                <body><h1>Login link expired</h1><p>Send `login`.</p></body></html>";
    assert_eq!(page_text(html), "Login link expired Send `login`.");
}

#[test]
fn short_texts_are_quoted_and_cut() {
    assert_eq!(short("hi"), "\"hi\"");
    assert_eq!(short("a\nb"), "\"a b\"");
    let long = "x".repeat(100);
    assert_eq!(short(&long).chars().count(), 62);
}
