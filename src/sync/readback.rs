//! The anchors of new objects, read back once per batch instead of once per
//! create. Where the target keeps a change mark (OpenLDAP's `contextCSN`,
//! AD's `highestCommittedUSN`; see [`Connector::write_mark`]), the writer
//! notes the mark before it sends a batch of plain adds, then one indexed
//! search lists what was written since ([`Connector::anchors_since`]) and
//! fills in the links before they are stored. Each create carries the mark
//! that was current when it was sent, so a create still in flight when the
//! mark moves on is looked for from its own mark. An object the search does
//! not list (a target whose marks another server's clock runs ahead of, say)
//! is read back by its DN; the links are stored only once every anchor is
//! known, as before (never a link to a write that did not happen).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::connector::{Connector, Error as CError};
use crate::model::dn::{Dn, dn_key};
use crate::store::Link;

use super::apply::Failure;
use super::log::RunLog;

/// The mark a create was sent under: its sequence number (marks only move
/// forward) and the target's value.
#[derive(Clone, Debug)]
pub(super) struct Tag {
    seq: u64,
    mark: Arc<str>,
}

/// A create whose anchor is still to be read back.
pub(super) struct Pending {
    /// Its link, all but the target anchor.
    pub link: Link,
    /// The mark it was sent under.
    pub tag: Tag,
}

/// The target's change mark as the writer goes.
#[derive(Default)]
pub(super) struct Marks {
    current: RefCell<Option<Tag>>,
    seq: std::cell::Cell<u64>,
    /// True once the run has created something (a run without creates
    /// never asks for a mark).
    wanted: std::cell::Cell<bool>,
}

impl Marks {
    /// The mark to send a create under, when there is one.
    pub fn current(&self) -> Option<Tag> {
        self.current.borrow().clone()
    }

    /// Notes that the run creates objects.
    pub fn want(&self) {
        self.wanted.set(true);
    }

    /// Asks the target for its mark now (near `dn`), once the run creates
    /// objects; without one (or on an error) creates read their anchors one
    /// by one.
    pub async fn refresh(&self, target: &dyn Connector, dn: &str) {
        if !self.wanted.get() {
            return;
        }
        let mark = target.write_mark(dn).await.ok().flatten();
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        *self.current.borrow_mut() = mark.map(|m| Tag {
            seq,
            mark: m.into(),
        });
    }
}

/// True when `dn` lies directly or deeper below `base` by its text (ASCII
/// case aside): the cheap test before a parse.
fn text_under(dn: &str, base: &str) -> bool {
    dn.len() > base.len()
        && dn.as_bytes()[dn.len() - base.len() - 1] == b','
        && dn[dn.len() - base.len()..].eq_ignore_ascii_case(base)
}

/// The DN below which every one of `dns` lies (their parents' common
/// part). A batch's DNs mostly share one parent: each is parsed only when
/// its text does not already end in the base found so far.
fn common_base<'a>(dns: impl Iterator<Item = &'a str>) -> String {
    let mut common: Option<Vec<String>> = None;
    let mut text = String::new();
    for dn in dns {
        if common.is_some() && (text.is_empty() || text_under(dn, &text)) {
            continue;
        }
        let Ok(parent) = Dn::parse(dn).map(|d| d.parent()) else {
            continue;
        };
        let rdns: Vec<String> = parent.rdns().to_vec();
        let next = match common {
            None => rdns,
            Some(c) => {
                let same = c
                    .iter()
                    .rev()
                    .zip(rdns.iter().rev())
                    .take_while(|(a, b)| dn_key(a) == dn_key(b))
                    .count();
                c[c.len() - same..].to_vec()
            }
        };
        text = next.join(",");
        common = Some(next);
    }
    text
}

/// Fills in the target anchors of `pending` (consumed): from one search of
/// what was written since the oldest mark among them, then each one still
/// missing by its DN. Returns the completed links and the objects whose
/// anchor could not be found (created, but not linked: the next run adopts
/// them by name). A lost connection is returned as the error.
pub(super) async fn resolve(
    target: &dyn Connector,
    pending: &mut Vec<Pending>,
    log: &RunLog,
) -> Result<(Vec<Link>, Vec<Failure>), CError> {
    let mut links: Vec<Link> = Vec::with_capacity(pending.len());
    let mut failures = Vec::new();
    let Some(oldest) = pending.iter().map(|p| &p.tag).min_by_key(|t| t.seq) else {
        return Ok((links, failures));
    };
    let mark = oldest.mark.clone();
    let base = common_base(pending.iter().map(|p| p.link.target_dn.as_str()));
    // Matched by the DN's text first (the server returns it as it was
    // sent); only what that misses is compared by parsed DN.
    let mut index: HashMap<String, usize> = HashMap::with_capacity(pending.len());
    for (i, p) in pending.iter().enumerate() {
        index.insert(p.link.target_dn.to_ascii_lowercase(), i);
    }
    let mut anchors: Vec<Option<String>> = vec![None; pending.len()];
    let mut others: Vec<(String, String)> = Vec::new();
    let listed = target
        .anchors_since(
            &base,
            &mark,
            &mut |dn, anchor| match index.get(&dn.to_ascii_lowercase()) {
                Some(&i) => anchors[i] = Some(anchor),
                None => others.push((dn, anchor)),
            },
        )
        .await;
    if anchors.iter().any(Option::is_none) && !others.is_empty() {
        let by_key: HashMap<String, usize> = pending
            .iter()
            .enumerate()
            .filter(|(i, _)| anchors[*i].is_none())
            .map(|(i, p)| (dn_key(&p.link.target_dn), i))
            .collect();
        for (dn, anchor) in others {
            if let Some(&i) = by_key.get(&dn_key(&dn)) {
                anchors[i] = Some(anchor);
            }
        }
    }
    match listed {
        Ok(()) => {}
        Err(e @ CError::Connection(_)) => return Err(e),
        Err(e) => log.line(&format!(
            "reading back the anchors of {} new objects under '{base}' failed ({e}); reading them one by one",
            pending.len()
        )),
    }
    for (p, anchor) in pending.drain(..).zip(anchors) {
        let mut link = p.link;
        let anchor = match anchor {
            Some(a) => Some(a),
            None => match target.get(&link.target_dn).await {
                Ok(found) => found.map(|e| e.anchor.unwrap_or_else(|| e.dn.clone())),
                Err(e @ CError::Connection(_)) => return Err(e),
                Err(e) => {
                    failures.push(Failure {
                        object: link.target_dn.clone(),
                        operation: "create".into(),
                        cause: format!("created, but reading its anchor back failed: {e}"),
                    });
                    continue;
                }
            },
        };
        match anchor {
            Some(a) => {
                link.target_anchor = a;
                links.push(link);
            }
            None => failures.push(Failure {
                object: link.target_dn.clone(),
                operation: "create".into(),
                cause: "created, but the target does not return it".into(),
            }),
        }
    }
    Ok((links, failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{SearchQuery, Sink};
    use crate::model::Entry;

    /// A target that lists some of what was written since a mark (its DNs
    /// in another case and spacing), finds the rest by DN, and has lost one.
    struct Target;

    #[async_trait::async_trait]
    impl Connector for Target {
        fn kind(&self) -> &'static str {
            "ldap"
        }
        fn describe(&self) -> String {
            "read-back target".into()
        }
        fn profile(&self) -> crate::connector::Result<serde_json::Value> {
            Ok(serde_json::Value::Null)
        }
        async fn test(&self) -> crate::connector::Result<crate::connector::TestReport> {
            Ok(Default::default())
        }
        async fn search(&self, _: &SearchQuery, _: &mut Sink<'_>) -> crate::connector::Result<()> {
            Ok(())
        }
        async fn anchors_since(
            &self,
            base: &str,
            mark: &str,
            found: &mut (dyn FnMut(String, String) + Send),
        ) -> crate::connector::Result<()> {
            assert_eq!(base, "ou=p,dc=t");
            assert_eq!(mark, "m1", "the oldest mark of the batch");
            found("UID=a, ou=p,dc=t".into(), "A".into());
            found("uid=b,ou=p,dc=t".into(), "B".into());
            found("uid=other,ou=p,dc=t".into(), "X".into());
            Ok(())
        }
        async fn get(&self, identity: &str) -> crate::connector::Result<Option<Entry>> {
            Ok((identity == "uid=c,ou=p,dc=t").then(|| {
                let mut e = Entry::new(identity);
                e.anchor = Some("C".into());
                e
            }))
        }
    }

    fn pending(uid: &str, seq: u64, mark: &str) -> Pending {
        Pending {
            link: Link {
                source_anchor: format!("s-{uid}"),
                target_anchor: String::new(),
                target_dn: format!("uid={uid},ou=p,dc=t"),
                source_hash: Some("h".into()),
                desired_dn: None,
                updated_ms: 1,
            },
            tag: Tag {
                seq,
                mark: mark.into(),
            },
        }
    }

    #[tokio::test]
    async fn anchors_come_from_the_listing_then_by_dn_and_a_lost_object_fails() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::create(dir.path(), "t", 0).unwrap();
        let mut batch = vec![
            pending("a", 2, "m2"),
            pending("b", 1, "m1"),
            pending("c", 2, "m2"),
            pending("d", 2, "m2"),
        ];
        let (links, failures) = resolve(&Target, &mut batch, &log).await.unwrap();
        assert!(batch.is_empty());
        let got: Vec<(&str, &str)> = links
            .iter()
            .map(|l| (l.source_anchor.as_str(), l.target_anchor.as_str()))
            .collect();
        assert_eq!(got, [("s-a", "A"), ("s-b", "B"), ("s-c", "C")]);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].object, "uid=d,ou=p,dc=t");
        assert!(failures[0].cause.contains("does not return it"));
    }

    #[test]
    fn the_common_base_is_the_parents_shared_part() {
        let dns = [
            "uid=a,ou=people,dc=example,dc=com",
            "uid=b,OU=People,dc=example,dc=com",
        ];
        assert_eq!(common_base(dns.into_iter()), "ou=people,dc=example,dc=com");
        let dns = [
            "uid=a,ou=people,dc=example,dc=com",
            "cn=g,ou=groups,dc=example,dc=com",
        ];
        assert_eq!(common_base(dns.into_iter()), "dc=example,dc=com");
        assert_eq!(common_base(std::iter::empty()), "");
        let dns = [
            "uid=a,ou=people,dc=example,dc=com",
            "uid=b,ou=people,dc=example,dc=com",
            "uid=c,ou=x,ou=people,dc=example,dc=com",
            "cn=d\\,e,dc=example,dc=com",
        ];
        assert_eq!(common_base(dns.into_iter()), "dc=example,dc=com");
        assert_eq!(common_base(["dc=com"].into_iter()), "");
    }
}
