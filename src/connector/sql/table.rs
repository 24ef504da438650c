//! What a SQL connection reads and writes: the table (or query) and its real
//! columns with their types, the key column, the change column and the
//! multi-valued attributes. Every identifier that reaches SQL text is one of
//! these names, checked against the database's own catalogue and quoted.

use super::dialect::Dialect;
use crate::connector::Error;

/// How a multi-valued attribute is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Multi {
    /// In one column, values joined by this separator.
    Separator(String),
    /// In a child table: one row per value, `key` referring to the main
    /// row's key, the value in `column`.
    Child {
        /// The child table.
        table: String,
        /// Its column holding the main row's key.
        key: String,
        /// Its column holding the value.
        column: String,
    },
}

/// One column: its name as the database spells it and its type as SQL text.
#[derive(Clone, Debug)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type (`integer`, `text`, `timestamp with time zone`, ...).
    pub ty: String,
}

impl Column {
    /// True for character types: compared case-insensitively, as LDAP does.
    pub fn is_text(&self) -> bool {
        let t = self.ty.to_ascii_lowercase();
        t == "text"
            || t == "name"
            || t == "citext"
            || t.starts_with("character")
            || t.starts_with("varchar")
            || t.starts_with("char")
            || t.starts_with("nvarchar")
            || t.starts_with("nchar")
    }
}

/// The shape of what a connection reads.
#[derive(Clone, Debug)]
pub struct Table {
    /// The dialect of the database.
    pub dialect: Dialect,
    /// The FROM clause: a quoted table, or `(query) AS q`.
    pub from: String,
    /// How columns of the main row are qualified in a subquery (the quoted
    /// table, or `q` for a query).
    pub alias: String,
    /// The table name as given (or "query"), for messages.
    pub label: String,
    /// False for a `query`: rows cannot be written.
    pub writable: bool,
    /// The columns, in table order.
    pub columns: Vec<Column>,
    /// Index of the key column.
    pub key: usize,
    /// Index of the change column.
    pub changed: Option<usize>,
    /// Multi-valued attributes by name (a column for separators, an extra
    /// attribute for child tables).
    pub multi: Vec<(String, Multi)>,
}

impl Table {
    /// The column named `name` (any case).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            self.columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
        })
    }

    /// The key column.
    pub fn key_column(&self) -> &Column {
        &self.columns[self.key]
    }

    /// The quoted key column.
    pub fn key_sql(&self) -> String {
        self.dialect.quote(&self.key_column().name)
    }

    /// The key column as natural text.
    pub fn key_text(&self) -> String {
        self.dialect
            .value_text(&self.key_sql(), &self.key_column().ty)
    }

    /// How the attribute `name` is multi-valued, if it is.
    pub fn multi(&self, name: &str) -> Option<&Multi> {
        self.multi
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, m)| m)
    }

    /// The child-table attributes.
    pub fn children(&self) -> impl Iterator<Item = (&String, &String, &String, &String)> {
        self.multi.iter().filter_map(|(n, m)| match m {
            Multi::Child { table, key, column } => Some((n, table, key, column)),
            Multi::Separator(_) => None,
        })
    }

    /// The error for an attribute that is no column.
    pub fn unknown(&self, name: &str) -> Error {
        let mut names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        names.extend(self.children().map(|(n, ..)| n.as_str()));
        Error::usage(format!(
            "{}: no column '{name}' (columns: {})",
            self.label,
            names.join(", ")
        ))
    }

    /// The select list: every column (or those in `attrs` and the key), as
    /// natural text ([`super::dialect::Dialect::value_text`]), named by its position.
    pub fn select_list(&self, attrs: Option<&[String]>) -> (String, Vec<usize>) {
        let picked: Vec<usize> = (0..self.columns.len())
            .filter(|&i| {
                i == self.key
                    || attrs.is_none_or(|a| {
                        a.iter()
                            .any(|x| x == "*" || x.eq_ignore_ascii_case(&self.columns[i].name))
                    })
            })
            .collect();
        let list = picked
            .iter()
            .map(|&i| {
                // named by position, so ORDER BY and WHERE always mean the
                // table's typed column, never this text copy
                format!(
                    "{} AS c{i}",
                    self.dialect.value_text(
                        &self.dialect.quote(&self.columns[i].name),
                        &self.columns[i].ty
                    )
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        (list, picked)
    }
}
