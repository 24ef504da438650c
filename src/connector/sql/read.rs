//! Reading rows as entries: keyset paging (`WHERE key > last ORDER BY key`,
//! so pages never skip or repeat rows as OFFSET paging would while the
//! table changes), values as text, separators split, child-table values
//! fetched once per page.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::SqlConnector;
use super::client::db_error;
use super::filter::{Where, to_where};
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
            t.dialect.as_text(&t.key_sql()),
            t.dialect.param(n)
        );
        w.params.push(base.to_string());
    }
    scan(c, &c.reader, &w, q.attrs.as_deref(), q.limit, sink).await
}

/// The row whose key is `identity` (compared as text), or `None`.
pub async fn get(c: &SqlConnector, identity: &str) -> Result<Option<Entry>> {
    let mut found = None;
    scan(
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
    .await?;
    Ok(found)
}

/// The condition selecting the row with key `key`.
pub fn by_key(t: &Table, key: &str) -> Where {
    Where {
        sql: format!(
            "{} = {}",
            t.dialect.as_text(&t.key_sql()),
            t.dialect.param(1)
        ),
        params: vec![key.to_string()],
    }
}

/// Streams the rows matching `w`, a page at a time, on session `client`.
/// `attrs`: the attributes to read (the key always); `Some(&[])` reads keys only.
pub async fn scan(
    c: &SqlConnector,
    client: &Client,
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
        let mut params = w.params.clone();
        let after_sql = after.as_ref().map(|a| {
            params.push(a.clone());
            d.typed_param(params.len(), &key_ty)
        });
        let sql = d.page(&list, &t.from, &w.sql, &t.key_sql(), after_sql, n);
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = client
            .query(&sql, &refs)
            .await
            .map_err(|e| db_error(&t.label, e))?;
        let mut entries: Vec<Entry> = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: Option<String> = row.get(key_pos);
            let Some(key) = key else { continue };
            let mut e = Entry::new(key.clone());
            e.anchor = Some(key);
            for (j, &i) in picked.iter().enumerate() {
                let Some(v) = row.get::<_, Option<String>>(j) else {
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
            let sql = format!(
                "SELECT {}, {} FROM {} WHERE {} = ANY($1) ORDER BY 1, 2",
                d.as_text(&d.quote(key)),
                d.as_text(&d.quote(column)),
                d.quote(table),
                d.as_text(&d.quote(key)),
            );
            let rows = client
                .query(&sql, &[&keys])
                .await
                .map_err(|e| db_error(table, e))?;
            let mut by: std::collections::HashMap<String, Vec<Value>> = Default::default();
            for r in &rows {
                let (k, v): (Option<String>, Option<String>) = (r.get(0), r.get(1));
                if let (Some(k), Some(v)) = (k, v) {
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
