//! Writing rows: create (INSERT ... RETURNING / OUTPUT the stored key), modify (LDAP
//! modify semantics over columns and child tables), delete. Values travel
//! as text parameters cast to the column's type by the database, so a bad
//! value is refused with the database's own words, naming the row.
//!
//! Inside a sync batch ([`crate::connector::Connector::begin_batch`]) all
//! writes go into one transaction on the writing session, each row under a
//! savepoint: a failing row is rolled back alone and reported, the rest
//! commits at [`commit`]. A process killed mid-batch leaves nothing of the
//! batch (the server rolls the open transaction back). Outside a batch each
//! write is a transaction of its own.

use std::sync::atomic::Ordering;

use super::read::{by_key, scan};
use super::session::{Param, Session};
use super::table::Multi;
use super::{SqlConnector, Writer};
use crate::connector::{Change, Error, Result};
use crate::model::{Entry, Value};

/// How a write is wrapped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrap {
    /// One row of an open batch transaction (a savepoint).
    Savepoint,
    /// A transaction of its own.
    Own,
}

async fn enter(c: &SqlConnector, w: &mut Writer) -> Result<Wrap> {
    let obj = &c.table.label;
    let d = c.table.dialect;
    if !w.in_tx && c.batching.load(Ordering::SeqCst) {
        w.client.batch(obj, d.begin()).await?;
        w.in_tx = true;
    }
    if w.in_tx {
        if let Err(e) = w.client.batch(obj, d.savepoint()).await {
            w.poisoned = true;
            return Err(e);
        }
        Ok(Wrap::Savepoint)
    } else {
        w.client.batch(obj, d.begin()).await?;
        Ok(Wrap::Own)
    }
}

async fn leave<T>(c: &SqlConnector, w: &mut Writer, how: Wrap, r: Result<T>) -> Result<T> {
    let obj = &c.table.label;
    let d = c.table.dialect;
    let sql = match (how, r.is_ok()) {
        (Wrap::Savepoint, true) => d.release(),
        (Wrap::Savepoint, false) => d.rollback_to(),
        (Wrap::Own, true) => d.commit(),
        (Wrap::Own, false) => d.rollback(),
    };
    if let Err(e) = w.client.batch(obj, sql).await {
        if how == Wrap::Savepoint {
            // Outside the row's savepoint: the batch transaction is failed.
            w.poisoned = true;
        }
        return Err(match r {
            Err(first) => first,
            Ok(_) => e,
        });
    }
    r
}

/// Commits the open batch transaction, if any, and ends the batch.
pub async fn commit(c: &SqlConnector) -> Result<()> {
    c.batching.store(false, Ordering::SeqCst);
    let mut guard = c.writer.lock().await;
    let Some(w) = guard.as_mut() else {
        return Ok(());
    };
    if !w.in_tx {
        return Ok(());
    }
    w.in_tx = false;
    if w.poisoned || w.client.is_closed() {
        // PostgreSQL would answer COMMIT of a failed transaction with
        // ROLLBACK and no error: say that the batch is lost instead.
        let poisoned = w.poisoned && !w.client.is_closed();
        let _ = w
            .client
            .batch(&c.table.label, c.table.dialect.rollback())
            .await;
        *guard = None;
        return Err(super::batch_lost(&c.table.label, poisoned));
    }
    let obj = format!("{}: committing the batch", c.table.label);
    let r = w.client.batch(&obj, c.table.dialect.commit()).await;
    if let Err(e) = r {
        *guard = None;
        return Err(e);
    }
    Ok(())
}

fn read_only(c: &SqlConnector) -> Result<()> {
    if c.table.writable {
        Ok(())
    } else {
        Err(Error::usage(
            "a connect_sql `query` is read-only; connect with `table` to write rows",
        ))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// The column value for `values` of attribute `name`: `None` for NULL.
fn cell(c: &SqlConnector, row: &str, name: &str, values: &[String]) -> Result<Option<String>> {
    match (c.table.multi(name), values) {
        (_, []) => Ok(None),
        (Some(Multi::Separator(sep)), vs) => {
            // A value holding the separator would read back as several
            // values: refused (naming the attribute, not the value).
            if let Some(i) = vs.iter().position(|v| v.contains(sep.as_str())) {
                return Err(Error::object(
                    c.row_label(row),
                    format!(
                        "value {} of '{name}' contains the separator '{sep}' of that column, \
                         so it would read back as several values; remove it from the value \
                         or choose another separator",
                        i + 1
                    ),
                    None,
                ));
            }
            Ok(Some(vs.join(sep)))
        }
        (_, [one]) => Ok(Some(one.clone())),
        (_, vs) => Err(Error::object(
            c.row_label(row),
            format!("column '{name}' holds one value, got {}", vs.len()),
            None,
        )),
    }
}

fn params(p: &[Option<String>]) -> Vec<Param> {
    p.iter().cloned().map(Param::from).collect()
}

/// The first cell of the first row, if any.
fn first_cell(rows: Vec<Vec<Option<String>>>) -> Option<Option<String>> {
    rows.into_iter()
        .next()
        .map(|r| r.into_iter().next().flatten())
}

/// Creates a row; the key is the key column's value in `attrs`, or `dn`.
pub async fn create(c: &SqlConnector, dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<Entry> {
    read_only(c)?;
    let t = &c.table;
    let key_name = t.key_column().name.clone();
    let key = attrs
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case(&key_name) && !v.is_empty())
        .map(|(_, v)| text(&v[0]))
        .unwrap_or_else(|| dn.to_string());
    if key.is_empty() {
        return Err(Error::usage(format!(
            "{}: create needs a key ('{key_name}' or the dn argument)",
            t.label
        )));
    }
    let mut cols: Vec<String> = Vec::new();
    let mut exprs: Vec<String> = Vec::new();
    let mut vals: Vec<Option<String>> = Vec::new();
    let mut child: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |col: &super::table::Column, v: Option<String>| {
        cols.push(t.dialect.quote(&col.name));
        vals.push(v);
        exprs.push(t.dialect.typed_param(vals.len(), &col.ty));
    };
    add(t.key_column(), Some(key.clone()));
    for (name, values) in attrs {
        let values: Vec<String> = values.iter().map(text).collect();
        if let Some(Multi::Child { .. }) = t.multi(name) {
            child.push((name.clone(), values));
            continue;
        }
        let Some(col) = t.column(name) else {
            if name.eq_ignore_ascii_case("objectClass") {
                continue;
            }
            return Err(Error::object(
                c.row_label(&key),
                t.unknown(name).to_string(),
                None,
            ));
        };
        if col.name == key_name {
            continue;
        }
        let v = cell(c, &key, &col.name, &values)?;
        add(col, v);
    }
    let sql =
        t.dialect
            .insert_returning_key(&t.from, &cols, &exprs, &t.key_sql(), &t.key_column().ty);
    let mut guard = c.writer().await?;
    let w = guard.as_mut().expect("writer is open");
    let how = enter(c, w).await?;
    let r = async {
        let rows = w
            .client
            .rows(&c.row_label(&key), &sql, &params(&vals))
            .await?;
        let stored: String = first_cell(rows).flatten().unwrap_or_else(|| key.clone());
        for (name, values) in &child {
            set_children(c, &w.client, &stored, name, values).await?;
        }
        // Read back on the writing session (it sees the batch's own rows),
        // inside the row's savepoint: a failing read rolls back this row
        // alone, not the whole batch transaction.
        let mut found = None;
        scan(c, &w.client, &by_key(t, &stored), None, Some(1), &mut |e| {
            found = Some(e);
            Ok(false)
        })
        .await?;
        found.ok_or_else(|| Error::NotFound(c.row_label(&stored)))
    }
    .await;
    leave(c, w, how, r).await
}

/// Replaces the child-table values of `attr` for the row `key`.
async fn set_children(
    c: &SqlConnector,
    client: &Session,
    key: &str,
    attr: &str,
    values: &[String],
) -> Result<()> {
    let t = &c.table;
    let d = t.dialect;
    let Some(Multi::Child {
        table,
        key: kcol,
        column,
    }) = t.multi(attr)
    else {
        return Ok(());
    };
    let obj = c.row_label(key);
    client
        .exec(
            &obj,
            &format!(
                "DELETE FROM {} WHERE {} = {}",
                d.quote(table),
                d.quote(kcol),
                d.typed_param(1, &c.child_key_type(attr))
            ),
            &[Param::from(key.to_string())],
        )
        .await?;
    let ty = c
        .child_types
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(attr))
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| "text".into());
    let sql = format!(
        "INSERT INTO {} ({}, {}) VALUES ({}, {})",
        d.quote(table),
        d.quote(kcol),
        d.quote(column),
        d.typed_param(1, &c.child_key_type(attr)),
        d.typed_param(2, &ty)
    );
    let mut seen: Vec<&String> = Vec::new();
    for v in values {
        if seen.contains(&v) {
            continue;
        }
        seen.push(v);
        client
            .exec(
                &format!("{obj}: {attr} '{v}'"),
                &sql,
                &[Param::from(key.to_string()), Param::from(v.clone())],
            )
            .await?;
    }
    Ok(())
}

/// Applies LDAP-style changes to the row whose key is `identity`.
pub async fn modify(c: &SqlConnector, identity: &str, changes: &[Change]) -> Result<()> {
    read_only(c)?;
    let t = &c.table;
    let d = t.dialect;
    let mut guard = c.writer().await?;
    let w = guard.as_mut().expect("writer is open");
    let how = enter(c, w).await?;
    let r = async {
        let mut cur = None;
        scan(
            c,
            &w.client,
            &by_key(t, identity),
            None,
            Some(1),
            &mut |e| {
                cur = Some(e);
                Ok(false)
            },
        )
        .await?;
        let cur = cur.ok_or_else(|| Error::NotFound(c.row_label(identity)))?;
        // The new values of each attribute touched, in order of first change.
        let mut new: Vec<(String, Vec<String>)> = Vec::new();
        for ch in changes {
            let (name, vals) = match ch {
                Change::Replace(n, v) | Change::Add(n, v) | Change::Delete(n, v) => (n, v),
            };
            let vals: Vec<String> = vals.iter().map(text).collect();
            let slot = match new.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some(i) => i,
                None => {
                    let now = cur.values(name).iter().map(text).collect();
                    new.push((name.clone(), now));
                    new.len() - 1
                }
            };
            let list = &mut new[slot].1;
            match ch {
                Change::Replace(..) => *list = vals,
                Change::Add(..) => {
                    for v in vals {
                        if !list.contains(&v) {
                            list.push(v);
                        }
                    }
                }
                Change::Delete(..) if vals.is_empty() => list.clear(),
                Change::Delete(..) => list.retain(|x| !vals.iter().any(|v| v == x)),
            }
        }
        let mut sets: Vec<String> = Vec::new();
        let mut vals: Vec<Option<String>> = Vec::new();
        let mut child: Vec<(String, Vec<String>)> = Vec::new();
        for (name, values) in &new {
            if let Some(Multi::Child { .. }) = t.multi(name) {
                child.push((name.clone(), values.clone()));
                continue;
            }
            let col = t.column(name).ok_or_else(|| {
                Error::object(c.row_label(identity), t.unknown(name).to_string(), None)
            })?;
            vals.push(cell(c, identity, &col.name, values)?);
            sets.push(format!(
                "{} = {}",
                d.quote(&col.name),
                d.typed_param(vals.len() + 1, &col.ty)
            ));
        }
        let mut key = identity.to_string();
        if !sets.is_empty() {
            let mut all: Vec<Option<String>> = vec![Some(identity.to_string())];
            all.extend(vals);
            let sql = d.update_returning_key(
                &t.from,
                &sets.join(", "),
                &format!("{} = {}", t.key_sql(), d.typed_param(1, &t.key_column().ty)),
                &t.key_sql(),
                &t.key_column().ty,
            );
            let rows = w
                .client
                .rows(&c.row_label(identity), &sql, &params(&all))
                .await?;
            let row = first_cell(rows).ok_or_else(|| Error::NotFound(c.row_label(identity)))?;
            if let Some(k) = row {
                key = k;
            }
        }
        for (name, values) in &child {
            set_children(c, &w.client, &key, name, values).await?;
        }
        Ok(())
    }
    .await;
    leave(c, w, how, r).await
}

/// Deletes the row whose key is `identity` (and its child-table rows).
pub async fn delete(c: &SqlConnector, identity: &str) -> Result<()> {
    read_only(c)?;
    let t = &c.table;
    let d = t.dialect;
    let mut guard = c.writer().await?;
    let w = guard.as_mut().expect("writer is open");
    let how = enter(c, w).await?;
    let obj = c.row_label(identity);
    let r = async {
        let id = [Param::from(identity.to_string())];
        for (attr, table, kcol, _) in t.children() {
            w.client
                .exec(
                    &obj,
                    &format!(
                        "DELETE FROM {} WHERE {} = {}",
                        d.quote(table),
                        d.quote(kcol),
                        d.typed_param(1, &c.child_key_type(attr))
                    ),
                    &id,
                )
                .await?;
        }
        let n = w
            .client
            .exec(
                &obj,
                &format!(
                    "DELETE FROM {} WHERE {} = {}",
                    t.from,
                    t.key_sql(),
                    d.typed_param(1, &t.key_column().ty)
                ),
                &id,
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(obj.clone()));
        }
        Ok(())
    }
    .await;
    leave(c, w, how, r).await
}
