//! Incremental reads of a SQL table by its change column (`changed:
//! "updated_at"`, any type that grows on every change: a timestamp, a
//! sequence number, SQL Server's `rowversion`, read as `0x...` hex and
//! compared as binary). The first round reads every row in scope and notes the
//! column's highest value, taken before reading; later rounds read the rows
//! whose value is at least that one (a row read twice is harmless: the
//! engine skips it by hash) and list the keys still in scope, so deleted
//! rows and rows that left the scope are found. A row changed by a
//! transaction that commits later with an older value is missed until the
//! next full run: keep the column set by the database (`now()` in a trigger
//! or default), not by clients with their own clocks.

use super::SqlConnector;
use super::filter::to_where;
use super::read::scan;
use super::session::texts;
use crate::connector::{ChangeRound, Result, SearchQuery, Sink};

const PREFIX: &str = "sql-changed:";

/// One change round for `q` since `cursor`; `None` without a change column.
pub async fn changes(
    c: &SqlConnector,
    q: &SearchQuery,
    cursor: Option<&str>,
    sink: &mut Sink<'_>,
) -> Result<Option<ChangeRound>> {
    let t = &c.table;
    let Some(ci) = t.changed else {
        return Ok(None);
    };
    if q.limit.is_some() {
        return Ok(None);
    }
    let d = t.dialect;
    let col = &t.columns[ci];
    let since = cursor
        .and_then(|c| c.strip_prefix(PREFIX))
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let scope = to_where(t, &q.filter, 1)?;
    // The newest value now, before reading: rows changed while we read are
    // read again next time.
    let max_sql = format!(
        "SELECT {} FROM {} WHERE {}",
        d.value_text(&format!("max({})", d.quote(&col.name)), &col.ty),
        t.from,
        scope.sql
    );
    let newest: Option<String> = c
        .reader
        .rows(&t.label, &max_sql, &texts(&scope.params))
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten());
    let mut read_w = scope.clone();
    if let Some(v) = &since {
        read_w.params.push(v.clone());
        read_w.sql = format!(
            "({}) AND {} >= {}",
            scope.sql,
            d.quote(&col.name),
            d.typed_param(read_w.params.len(), &col.ty)
        );
    }
    scan(c, &c.reader, &read_w, q.attrs.as_deref(), None, sink).await?;
    let present = match &since {
        None => None,
        Some(_) => {
            let mut keys = Vec::new();
            scan(c, &c.reader, &scope, Some(&[]), None, &mut |e| {
                keys.extend(e.anchor);
                Ok(true)
            })
            .await?;
            Some(keys)
        }
    };
    let cursor = match newest.or(since.clone()) {
        Some(v) => format!("{PREFIX}{v}"),
        None => String::new(),
    };
    Ok(Some(ChangeRound {
        full: since.is_none(),
        removed: Vec::new(),
        present,
        cursor,
        note: None,
    }))
}
