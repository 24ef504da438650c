//! Writing one planned create. Under the batch's change mark (see
//! [`super::readback`]) it is a plain add whose values are handed over and
//! whose anchor is read back with the batch; otherwise the connector's
//! create returns the anchor. A create refused because the object already
//! exists (a crash between a write and its link) adopts the object found
//! by its name, bringing its attributes up to the plan's values.

use crate::connector::{Change, Error as CError};

use super::apply::{Failure, Outcome, already_exists, link};
use super::item::{AttrChange, Item};
use super::projected::Projected;
use super::readback::{Pending, Tag};
use super::rules::StepDef;

/// The run log's line for a create: the new DN, its source and the values.
fn create_line(dn: &str, item: &Item, attrs: &[AttrChange]) -> String {
    format!(
        "create {dn} (source {}): {}",
        item.source_dn,
        super::write_log::changes(attrs)
    )
}

/// A create's attributes as the connector takes them.
fn list_of(attrs: &[AttrChange]) -> Vec<(String, Vec<crate::model::Value>)> {
    attrs
        .iter()
        .map(|a| (a.attr.to_string(), a.new.clone()))
        .collect()
}

/// Writes the create of `item` (`dn`, the plan's `values`) into `o`.
pub(super) async fn create(
    step: &StepDef,
    item: &Item,
    dn: &str,
    values: &Projected,
    tag: Option<Tag>,
    mut o: Outcome,
) -> Result<Outcome, (String, CError)> {
    let target = &step.target;
    let attrs = super::project::create_attrs(step, dn, values)
        .map_err(|m| (dn.to_string(), CError::Other(m.to_string())))?;
    // Under a mark the anchor is read back with the batch
    // (`readback`), and the values are handed over, not copied.
    let line = create_line(dn, item, &attrs);
    let (sent, kept) = match tag {
        Some(tag) => {
            let owned = attrs
                .into_iter()
                .map(|a| (a.attr.to_string(), a.new))
                .collect();
            (target.add(dn, owned).await.map(|()| Err(tag)), None)
        }
        None => {
            let sent = target.create_anchor(dn, &list_of(&attrs)).await;
            (sent.map(Ok), Some(attrs))
        }
    };
    match sent {
        Ok(anchor) => {
            o.lines.push(line);
            match anchor {
                Ok(anchor) => {
                    let anchor = anchor.unwrap_or_else(|| dn.to_string());
                    o.put = Some(link(item, &anchor, dn));
                }
                Err(tag) => {
                    o.pending = Some(Pending {
                        link: link(item, "", dn),
                        tag,
                    });
                }
            }
            o.created = true;
            Ok(o)
        }
        Err(CError::Partial {
            object,
            anchor,
            cause,
        }) => {
            // Created, but not complete: link it without a hash, so the
            // next run plans it again and finishes the job.
            o.lines
                .push(format!("create {dn} (source {})", item.source_dn));
            let mut l = link(item, &anchor, dn);
            l.source_hash = None;
            o.put = Some(l);
            o.created = true;
            o.failure = Some(Failure {
                object,
                operation: "create".into(),
                cause: format!("created as {anchor}, but {cause}"),
            });
            Ok(o)
        }
        // A crash after the write but before the link: adopt the object
        // by its name (not in Entra, where the "name" is the collection).
        Err(err) if already_exists(&err) && target.create_name_finds_object() => {
            let existing = target.get(dn).await.map_err(|e| (dn.to_string(), e))?;
            let Some(t) = existing else {
                return Err((dn.to_string(), err));
            };
            // Handed over to the add: built again (from the plan's values).
            let attrs = match kept {
                Some(a) => a,
                None => super::project::create_attrs(step, dn, values)
                    .map_err(|m| (dn.to_string(), CError::Other(m.to_string())))?,
            };
            let changes: Vec<Change> = attrs
                .iter()
                .filter(|a| !a.attr.eq_ignore_ascii_case("objectClass"))
                .filter(|a| {
                    let mut old: Vec<Vec<u8>> = t
                        .values(&a.attr)
                        .iter()
                        .map(|v| v.as_bytes().to_vec())
                        .collect();
                    let mut new: Vec<Vec<u8>> =
                        a.new.iter().map(|v| v.as_bytes().to_vec()).collect();
                    old.sort();
                    new.sort();
                    old != new
                })
                .map(|a| Change::Replace(a.attr.to_string(), a.new.clone()))
                .collect();
            if !changes.is_empty() {
                target
                    .modify(&t.dn, &changes)
                    .await
                    .map_err(|e| (t.dn.clone(), e))?;
            }
            let anchor = t.anchor.clone().unwrap_or_else(|| t.dn.clone());
            o.lines.push(format!(
                "adopt {} (it already existed; source {})",
                t.dn, item.source_dn
            ));
            o.put = Some(link(item, &anchor, &t.dn));
            o.created = true;
            Ok(o)
        }
        Err(err) => Err((dn.to_string(), err)),
    }
}
