//! No identity, DN, filter, GUID/SID or escaping entry point panics on any
//! text (issue 10 item 1): property tests over arbitrary Unicode strings,
//! including the shapes that reach the byte-sensitive branches (`S-…`,
//! `{…}`, `attr=value`, `(…)`, backslash escapes) with multi-byte
//! characters placed where a byte slice would cut one in half.
//!
//! Each property only asserts "returns" (a value or an error): a panic is
//! the failure. The CSV and LDIF connectors are asked `get` (and `delete`,
//! which resolves the identity first) through the public `Connector` trait.

use idsync::connector::Connector;
use idsync::connector::csv::{CsvConnector, CsvOptions};
use idsync::connector::ldap::read::{check_filter, classify};
use idsync::connector::ldif::LdifConnector;
use idsync::model::codec;
use idsync::model::dn::{Dn, dn_eq, dn_escape, dn_key, ldap_escape, ldap_escape_bytes};
use idsync::model::entry::Entry;
use idsync::model::filter::Filter;
use idsync::model::value::Value;
use proptest::prelude::*;

/// Arbitrary text, biased towards the prefixes the classifiers look at
/// and towards multi-byte characters right after them.
fn text() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just(""),
        Just("S"),
        Just("S-"),
        Just("s-1-"),
        Just("S-1-5-21-"),
        Just("{"),
        Just("cn="),
        Just("uid=Søren,"),
        Just("("),
        Just("(cn="),
        Just("(&(uid="),
        Just("\\"),
        Just("#"),
        Just(" "),
    ];
    let wide = prop_oneof![
        Just("ø"),
        Just("山田"),
        Just("ß"),
        Just("\u{1F600}"),
        Just("\u{0301}"),
        Just("İ"),
        Just("\\c3"),
        Just("\\"),
        Just("*"),
        Just(")"),
        Just("-"),
        Just(""),
    ];
    (prefix, wide, any::<String>(), wide_tail()).prop_map(|(p, w, s, t)| format!("{p}{w}{s}{t}"))
}

fn wide_tail() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('ø'),
            Just('山'),
            Just('='),
            Just(','),
            Just('-'),
            Just('1'),
            Just('}'),
            Just(')'),
            any::<char>()
        ],
        0..8,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn person() -> Entry {
    let mut e = Entry::new("uid=søren,ou=people,dc=example,dc=com");
    e.push("uid", [Value::Text("søren".into())]);
    e.push("cn", [Value::Text("山田 太郎".into())]);
    e.push("objectGUID", [Value::Binary((0u8..16).collect())]);
    e.push(
        "objectSid",
        [Value::Binary(vec![1, 1, 0, 0, 0, 0, 0, 5, 1, 0, 0, 0])],
    );
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn codecs_never_panic(s in text()) {
        let _ = codec::looks_like_sid(&s);
        let _ = codec::looks_like_guid(&s);
        let _ = codec::sid_from_string(&s);
        let _ = codec::guid_from_string(&s);
        let _ = codec::sid_to_string(s.as_bytes());
        let _ = codec::guid_to_string(s.as_bytes());
        let _ = Value::from_text("objectGUID", &s).display("objectGUID");
        let _ = Value::from_text("objectSid", &s).display("objectSid");
        let _ = Value::Binary(s.clone().into_bytes()).display("objectSid");
    }

    #[test]
    fn dns_and_escapes_never_panic(s in text(), t in text()) {
        if let Ok(d) = Dn::parse(&s) {
            let _ = d.rdn();
            let _ = d.parent().to_string();
            if let Ok(b) = Dn::parse(&t) {
                let _ = d.is_under(&b);
            }
        }
        let _ = dn_eq(&s, &t);
        let _ = dn_key(&s);
        let escaped = dn_escape(&s);
        // An escaped value is always one RDN value.
        if !s.is_empty() {
            let dn = format!("cn={escaped},dc=example");
            prop_assert_eq!(Dn::parse(&dn).map(|d| d.rdns().len()).ok(), Some(2), "{}", dn);
        }
        let f = format!("(cn={})", ldap_escape(&s));
        prop_assert!(Filter::parse(&f).is_ok(), "{}", f);
        let _ = ldap_escape_bytes(s.as_bytes());
    }

    #[test]
    fn filters_never_panic(s in text()) {
        let e = person();
        for f in [s.clone(), format!("({s})"), format!("(cn={s})"), format!("(cn=*{s}*)"),
                  format!("(objectGUID={s})"), format!("(objectSid={s})"), format!("(&(uid=*)({s}))")] {
            match Filter::parse(&f) {
                Ok(p) => { let _ = p.matches(&e); let _ = p.attributes(); let _ = p.to_odata(&|_| false); }
                Err(err) => { let _ = err.to_string(); }
            }
            let _ = check_filter(&f);
        }
    }

    #[test]
    fn ldap_identity_classification_never_panics(s in text()) {
        let _ = classify(&s);
        let _ = idsync::connector::graph::is_guid(&s);
        let _ = idsync::connector::graph::collection(&s);
    }
}

/// The file connectors resolve any identity to a row, nothing, or an error.
#[test]
fn file_connectors_get_any_identity() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "id,name\nsøren,Søren\n山田,山田 太郎\nS-1-5-21-1,sid\n",
    )
    .unwrap();
    let ldif = dir.path().join("people.ldif");
    std::fs::write(
        &ldif,
        "dn: uid=søren,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: søren\ncn: Søren\nsn: S\n\n\
         dn: cn=山田,dc=example,dc=com\nobjectClass: person\ncn: 山田\nsn: 山田\n",
    )
    .unwrap();
    let c = CsvConnector::open(&csv, CsvOptions::new("id")).unwrap();
    let l = LdifConnector::open(&ldif).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        // Found by their non-ASCII names.
        assert!(c.get("Søren").await.unwrap().is_some());
        assert!(c.get("山田").await.unwrap().is_some());
        assert!(l.get("Søren").await.unwrap().is_some());
        assert!(l.get("山田").await.unwrap().is_some());
        assert!(l.get("cn=山田,dc=example,dc=com").await.unwrap().is_some());
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 300,
            ..ProptestConfig::default()
        });
        runner
            .run(&text(), |s| {
                let _ = futures::executor::block_on(c.get(&s));
                let _ = futures::executor::block_on(l.get(&s));
                let _ = futures::executor::block_on(l.members(&s));
                Ok(())
            })
            .unwrap();
    });
}
