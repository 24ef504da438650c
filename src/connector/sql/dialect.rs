//! The SQL text that differs between database systems: identifier quoting,
//! parameter placeholders, casts, keyset paging and inserts that return the
//! stored row. PostgreSQL is the one in use; T-SQL (SQL Server) is written
//! here too so the tiberius connector can slot in, and is checked as text.

/// A database system's SQL dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// Microsoft SQL Server (T-SQL).
    TSql,
}

impl Dialect {
    /// A quoted identifier; `schema.table` is quoted part by part. Quote
    /// characters inside a name are doubled, so no name can end the quoting.
    pub fn quote(self, ident: &str) -> String {
        ident
            .split('.')
            .map(|part| match self {
                Dialect::Postgres => format!("\"{}\"", part.replace('"', "\"\"")),
                Dialect::TSql => format!("[{}]", part.replace(']', "]]")),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The placeholder of the `n`th parameter (1-based).
    pub fn param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::TSql => format!("@P{n}"),
        }
    }

    /// `expr` as text (how values are read: they print as the database
    /// prints them).
    pub fn as_text(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({expr} AS text)"),
            Dialect::TSql => format!("CAST({expr} AS nvarchar(max))"),
        }
    }

    /// A text parameter converted to the column type `ty` by the database
    /// (so a bad value is refused with the database's own message).
    pub fn typed_param(self, n: usize, ty: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({}::text AS {ty})", self.param(n)),
            Dialect::TSql => format!("CAST({} AS {ty})", self.param(n)),
        }
    }

    /// One page of a keyset scan: `cols` from `from` where `cond`, after
    /// the key value in parameter `after` (none on the first page), ordered
    /// by `key`, at most `limit` rows.
    pub fn page(
        self,
        cols: &str,
        from: &str,
        cond: &str,
        key: &str,
        after: Option<String>,
        limit: usize,
    ) -> String {
        let cond = match after {
            Some(a) => format!("({cond}) AND {key} > {a}"),
            None => cond.to_string(),
        };
        match self {
            Dialect::Postgres => {
                format!("SELECT {cols} FROM {from} WHERE {cond} ORDER BY {key} LIMIT {limit}")
            }
            Dialect::TSql => {
                format!("SELECT TOP ({limit}) {cols} FROM {from} WHERE {cond} ORDER BY {key}")
            }
        }
    }

    /// An insert of `cols` (already quoted) with `values` (SQL expressions)
    /// that returns `returning` (SQL expressions) of the stored row.
    pub fn insert_returning(
        self,
        table: &str,
        cols: &[String],
        values: &[String],
        returning: &str,
    ) -> String {
        match self {
            Dialect::Postgres => format!(
                "INSERT INTO {table} ({}) VALUES ({}) RETURNING {returning}",
                cols.join(", "),
                values.join(", ")
            ),
            Dialect::TSql => format!(
                "INSERT INTO {table} ({}) OUTPUT {} VALUES ({})",
                cols.join(", "),
                returning
                    .split(", ")
                    .map(|c| c.replace("CAST(", "CAST(INSERTED."))
                    .collect::<Vec<_>>()
                    .join(", "),
                values.join(", ")
            ),
        }
    }

    /// `true` and `false` as conditions.
    pub fn truth(self, b: bool) -> &'static str {
        match (self, b) {
            (Dialect::Postgres, true) => "TRUE",
            (Dialect::Postgres, false) => "FALSE",
            (Dialect::TSql, true) => "1=1",
            (Dialect::TSql, false) => "1=0",
        }
    }

    /// A condition that is false (not unknown) when `cond` is NULL.
    pub fn definite(self, cond: &str) -> String {
        match self {
            Dialect::Postgres => format!("COALESCE(({cond}), FALSE)"),
            Dialect::TSql => format!("(CASE WHEN ({cond}) THEN 1 ELSE 0 END) = 1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect::*;

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(Postgres.quote("hr.employees"), "\"hr\".\"employees\"");
        assert_eq!(Postgres.quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(TSql.quote("dbo.employees"), "[dbo].[employees]");
        assert_eq!(TSql.quote("a]b"), "[a]]b]");
    }

    #[test]
    fn tsql_paging_and_parameters() {
        assert_eq!(TSql.param(3), "@P3");
        assert_eq!(
            TSql.page("[a]", "[t]", "1=1", "[id]", Some(TSql.param(1)), 500),
            "SELECT TOP (500) [a] FROM [t] WHERE (1=1) AND [id] > @P1 ORDER BY [id]"
        );
        assert_eq!(
            Postgres.page("\"a\"", "\"t\"", "TRUE", "\"id\"", None, 10),
            "SELECT \"a\" FROM \"t\" WHERE TRUE ORDER BY \"id\" LIMIT 10"
        );
        assert_eq!(TSql.typed_param(2, "int"), "CAST(@P2 AS int)");
        assert_eq!(
            TSql.insert_returning(
                "[t]",
                &["[id]".into(), "[n]".into()],
                &["@P1".into(), "@P2".into()],
                "CAST([id] AS nvarchar(max)), CAST([n] AS nvarchar(max))"
            ),
            "INSERT INTO [t] ([id], [n]) OUTPUT CAST(INSERTED.[id] AS nvarchar(max)), \
             CAST(INSERTED.[n] AS nvarchar(max)) VALUES (@P1, @P2)"
        );
        assert_eq!(
            TSql.definite("[a] = @P1"),
            "(CASE WHEN ([a] = @P1) THEN 1 ELSE 0 END) = 1"
        );
    }
}
