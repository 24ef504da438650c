//! Reading rows as entries: keyset paging (`WHERE key > last ORDER BY key`,
//! so pages never skip or repeat rows as OFFSET paging would while the
//! table changes), values as text, separators split, child-table values
//! fetched once per page.

use super::SqlConnector;
use super::dialect::Dialect;
use super::filter::{Where, to_where};
use super::session::{Param, Session, texts};
use super::table::{Multi, Table};
use crate::connector::{Result, Scope, SearchQuery, Sink};
use crate::model::{Entry, Value};

/// Streams the rows matching `q` (an LDAP filter) into `sink`.
pub async fn search(c: &SqlConnector, q: &SearchQuery, sink: &mut Sink<'_>) -> Result<()> {
    let t = &c.table;
    let mut w = to_where(t, &q.filter, 1)?;
    if q.scope == Scope::Base
        && let Some(base) = q.base.as_deref().filter(|b| !b.is_empty())
    {
        let n = w.params.len() + 1;
        w.sql = format!(
            "({}) AND {} = {}",
            w.sql,
            t.key_sql(),
            t.dialect.typed_param(n, &t.key_column().ty)
        );
        w.params.push(base.to_string());
    }
    scan(c, &c.reader, &w, q.attrs.as_deref(), q.limit, sink).await
}

/// The row whose key is `identity` (compared in the key column's own
/// type, so its index is used), or `None` (also when `identity` is no
/// value of that type: no row can have it as key).
pub async fn get(c: &SqlConnector, identity: &str) -> Result<Option<Entry>> {
    let mut found = None;
    let r = scan(
        c,
        &c.reader,
        &by_key(&c.table, identity),
        None,
        Some(1),
        &mut |e| {
            found = Some(e);
            Ok(false)
        },
    )
    .await;
    match r {
        Err(e) if is_bad_value(&e) => Ok(None),
        Err(e) => Err(e),
        Ok(()) => Ok(found),
    }
}

/// True for a database error saying a value does not fit its type
/// (PostgreSQL: SQLSTATE class 22, "data exception"; SQL Server: errors
/// 241, 242, 245, 8114, 8115, 8169: conversion failed or out of range).
pub fn is_bad_value(e: &crate::connector::Error) -> bool {
    let text = e.to_string();
    matches!(e, crate::connector::Error::Object { .. })
        && (text.contains("[SQLSTATE 22")
            || [241, 242, 245, 8114, 8115, 8169]
                .iter()
                .any(|n| text.contains(&format!("[SQL Server error {n}]"))))
}

/// The condition selecting the row with key `key`: the key column
/// compared with the value converted to the column's type (never the
/// column converted to text, which no index serves).
pub fn by_key(t: &Table, key: &str) -> Where {
    Where {
        sql: format!(
            "{} = {}",
            t.key_sql(),
            t.dialect.typed_param(1, &t.key_column().ty)
        ),
        params: vec![key.to_string()],
    }
}

/// Streams the rows matching `w`, a page at a time, on session `client`.
/// `attrs`: the attributes to read (the key always); `Some(&[])` reads keys only.
pub async fn scan(
    c: &SqlConnector,
    client: &Session,
    w: &Where,
    attrs: Option<&[String]>,
    limit: Option<usize>,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let t = &c.table;
    let d = t.dialect;
    let (list, picked) = t.select_list(attrs);
    let key_pos = picked.iter().position(|&i| i == t.key).unwrap_or(0);
    let children: Vec<(String, String, String, String)> = t
        .children()
        .filter(|(n, ..)| {
            attrs.is_none_or(|a| a.iter().any(|x| x == "*" || x.eq_ignore_ascii_case(n)))
        })
        .map(|(n, tb, k, col)| (n.clone(), tb.clone(), k.clone(), col.clone()))
        .collect();
    let key_ty = t.key_column().ty.clone();
    let page_size = c.opts.page_size.max(1);
    let mut left = limit.unwrap_or(usize::MAX);
    let mut after: Option<String> = None;
    loop {
        let n = page_size.min(left);
        if n == 0 {
            return Ok(());
        }
        let mut params = texts(&w.params);
        let after_sql = after.as_ref().map(|a| {
            params.push(Param::from(a.clone()));
            d.typed_param(params.len(), &key_ty)
        });
        let sql = d.page(&list, &t.from, &w.sql, &t.key_sql(), after_sql, n);
        let rows = client.rows(&t.label, &sql, &params).await?;
        let mut entries: Vec<Entry> = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(key) = row.get(key_pos).cloned().flatten() else {
                continue;
            };
            let mut e = Entry::new(key.clone());
            e.anchor = Some(key);
            for (j, &i) in picked.iter().enumerate() {
                let Some(v) = row.get(j).cloned().flatten() else {
                    continue;
                };
                let name = &t.columns[i].name;
                let values: Vec<Value> = match t.multi(name) {
                    Some(Multi::Separator(sep)) => v
                        .split(sep.as_str())
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::Text(s.to_string()))
                        .collect(),
                    _ => vec![Value::Text(v)],
                };
                if !values.is_empty() {
                    e.push(name, values);
                }
            }
            entries.push(e);
        }
        for (attr, table, key, column) in &children {
            let keys: Vec<String> = entries.iter().map(|e| e.dn.clone()).collect();
            if keys.is_empty() {
                break;
            }
            let key_ty = c.child_key_type(attr);
            let (cond, params) = match d {
                Dialect::Postgres => (
                    d.in_params(&d.quote(key), 1, 1, &key_ty),
                    vec![Param::List(keys)],
                ),
                Dialect::TSql => (
                    d.in_params(&d.quote(key), 1, keys.len(), &key_ty),
                    texts(&keys),
                ),
            };
            let sql = format!(
                "SELECT {}, {} FROM {} WHERE {cond} ORDER BY 1, 2",
                d.value_text(&d.quote(key), &key_ty),
                d.value_text(&d.quote(column), &c.child_type(attr)),
                d.quote(table),
            );
            let rows = client.rows(table, &sql, &params).await?;
            let mut by: std::collections::HashMap<String, Vec<Value>> = Default::default();
            for r in rows {
                let mut r = r.into_iter();
                if let (Some(Some(k)), Some(Some(v))) = (r.next(), r.next()) {
                    by.entry(k).or_default().push(Value::Text(v));
                }
            }
            for e in &mut entries {
                if let Some(vs) = by.remove(&e.dn) {
                    e.push(attr, vs);
                }
            }
        }
        let got = rows.len();
        after = entries.last().map(|e| e.dn.clone());
        for e in entries {
            left = left.saturating_sub(1);
            if !sink(e)? {
                return Ok(());
            }
        }
        if got < n || after.is_none() {
            return Ok(());
        }
    }
}
