//! LDAP filters (RFC 4515, as parsed by [`crate::model::filter`]) as SQL
//! conditions. Values always travel as parameters, never inside the SQL
//! text; attribute names must be real columns (or child-table attributes)
//! and are quoted. Text columns compare case-insensitively, as LDAP does;
//! other columns compare in their own type (`(salary>=5000)` is numeric).
//! A test on a NULL column is false, so `(!(a=x))` matches rows without `a`.

use super::table::{Column, Multi, Table};
use crate::connector::{Error, Result};
use crate::model::filter::{Filter, Node};

/// A condition and its parameters (numbered from the `first` given).
#[derive(Clone, Debug, Default)]
pub struct Where {
    /// The condition.
    pub sql: String,
    /// The parameter values, in order.
    pub params: Vec<String>,
}

/// The condition for `filter` over `t`; parameters numbered from `first`.
pub fn to_where(t: &Table, filter: &str, first: usize) -> Result<Where> {
    let f = Filter::parse(filter).map_err(|e| Error::usage(e.to_string()))?;
    let mut w = Where::default();
    w.sql = node(t, f.node(), first, &mut w.params)?;
    Ok(w)
}

fn node(t: &Table, n: &Node, first: usize, p: &mut Vec<String>) -> Result<String> {
    let d = t.dialect;
    Ok(match n {
        Node::And(v) if v.is_empty() => d.truth(true).to_string(),
        Node::Or(v) if v.is_empty() => d.truth(false).to_string(),
        Node::And(v) | Node::Or(v) => {
            let sep = if matches!(n, Node::And(_)) {
                " AND "
            } else {
                " OR "
            };
            let parts = v
                .iter()
                .map(|x| node(t, x, first, p))
                .collect::<Result<Vec<_>>>()?;
            format!("({})", parts.join(sep))
        }
        Node::Not(x) => format!("(NOT {})", node(t, x, first, p)?),
        Node::Present(a) if a.eq_ignore_ascii_case("objectClass") && t.column(a).is_none() => {
            d.truth(true).to_string()
        }
        Node::Equal(a, v) | Node::Approx(a, v) => leaf(t, a, first, p, |c, e, p| {
            let val = String::from_utf8_lossy(v.raw()).into_owned();
            Ok(match (c.map(|c| (c, t.multi(&c.name))), c) {
                (Some((_, Some(Multi::Separator(sep)))), _) => {
                    let n = push(p, first, val);
                    let m = push(p, first, sep.clone());
                    d.in_separated(&d.param(n), &d.as_text(e), &d.param(m))
                }
                (_, Some(c)) if !c.is_text() => {
                    let n = push(p, first, val);
                    format!("{e} = {}", d.typed_param(n, &c.ty))
                }
                _ => {
                    let n = push(p, first, val);
                    format!("lower({}) = lower({})", d.as_text(e), d.param(n))
                }
            })
        })?,
        Node::Greater(a, v) | Node::Less(a, v) => {
            let op = if matches!(n, Node::Greater(..)) {
                ">="
            } else {
                "<="
            };
            leaf(t, a, first, p, |c, e, p| {
                let n = push(p, first, String::from_utf8_lossy(v.raw()).into_owned());
                Ok(match c {
                    Some(c) if !c.is_text() => format!("{e} {op} {}", d.typed_param(n, &c.ty)),
                    _ => format!("{} {op} {}", d.as_text(e), d.param(n)),
                })
            })?
        }
        Node::Present(a) => leaf(t, a, first, p, |_, e, _| Ok(format!("{e} IS NOT NULL")))?,
        Node::Substrings {
            attr,
            initial,
            any,
            last,
        } => leaf(t, attr, first, p, |_, e, p| {
            let mut pat = String::new();
            pat.push_str(&like_escape(initial.as_deref().unwrap_or("")));
            pat.push('%');
            for a in any {
                pat.push_str(&like_escape(a));
                pat.push('%');
            }
            if let Some(l) = last {
                pat.push_str(&like_escape(l));
            }
            let n = push(p, first, pat);
            Ok(format!(
                "lower({}) LIKE {} ESCAPE '\\'",
                d.as_text(e),
                d.param(n)
            ))
        })?,
    })
}

/// A test on one attribute: a column of the row, or a child-table
/// attribute (true when some child row passes).
fn leaf(
    t: &Table,
    attr: &str,
    first: usize,
    p: &mut Vec<String>,
    test: impl FnOnce(Option<&Column>, &str, &mut Vec<String>) -> Result<String>,
) -> Result<String> {
    let d = t.dialect;
    if let Some(c) = t.column(attr) {
        let e = d.quote(&c.name);
        return Ok(d.definite(&test(Some(c), &e, p)?));
    }
    if let Some(Multi::Child { table, key, column }) = t.multi(attr) {
        let e = format!("ch.{}", d.quote(column));
        let cond = test(None, &e, p)?;
        return Ok(format!(
            "EXISTS (SELECT 1 FROM {} ch WHERE ch.{} = {}.{} AND {})",
            d.quote(table),
            d.quote(key),
            t.alias,
            t.key_sql(),
            d.definite(&cond)
        ));
    }
    let _ = first;
    Err(t.unknown(attr))
}

fn push(p: &mut Vec<String>, first: usize, v: String) -> usize {
    p.push(v);
    first + p.len() - 1
}

/// Escapes LIKE's wildcards (and the escape character) in a literal piece.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::dialect::Dialect;
    use super::*;

    fn table() -> Table {
        Table {
            dialect: Dialect::Postgres,
            from: "\"emp\"".into(),
            alias: "\"emp\"".into(),
            label: "emp".into(),
            writable: true,
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: "integer".into(),
                },
                Column {
                    name: "name".into(),
                    ty: "text".into(),
                },
            ],
            key: 0,
            changed: None,
            multi: vec![],
        }
    }

    #[test]
    fn values_are_parameters_and_names_are_checked() {
        let t = table();
        let w = to_where(&t, "(&(name=x'\\29 OR 1=1 --)(id>=3))", 1).unwrap();
        assert!(!w.sql.contains("OR 1=1"), "{}", w.sql);
        assert_eq!(w.params, vec!["x') OR 1=1 --".to_string(), "3".to_string()]);
        assert!(w.sql.contains("$1") && w.sql.contains("$2"), "{}", w.sql);
        let e = to_where(&t, "(nosuch=1)", 1).unwrap_err().to_string();
        assert!(e.contains("no column 'nosuch'"), "{e}");
        let w = to_where(&t, "(name=a%b*_c)", 1).unwrap();
        assert_eq!(w.params, vec!["a\\%b%\\_c".to_string()]);
    }
}
