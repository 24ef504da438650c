//! The SQL text that differs between database systems: identifier quoting,
//! parameter placeholders, casts, values as natural text, keyset paging,
//! inserts and updates that return the stored key, transaction control with
//! per-row savepoints, upserts. PostgreSQL and T-SQL (SQL Server); the T-SQL
//! text is checked here as text (no SQL Server runs in the tests).

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
    /// SQL Server's binary types (`rowversion`, `varbinary`) read their
    /// `0x...` text form back with CONVERT style 1.
    pub fn typed_param(self, n: usize, ty: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({}::text AS {ty})", self.param(n)),
            Dialect::TSql => match tsql_kind(ty) {
                TKind::Binary => format!("CONVERT(varbinary(max), {}, 1)", self.param(n)),
                TKind::RowVersion => format!("CONVERT(binary(8), {}, 1)", self.param(n)),
                _ => format!("CAST({} AS {ty})", self.param(n)),
            },
        }
    }

    /// The value of `expr`, a column of type `ty`, as natural text: ISO
    /// dates and times, `true`/`false`, numbers as the database prints them
    /// (no exponent, no padding beyond the column's own scale), binary as
    /// `0x...` hex. PostgreSQL's text output is already so (the session
    /// runs with `DateStyle ISO` and UTC); SQL Server's CAST is not (`bit`
    /// prints `1`, `datetime` prints `Mar  1 2021 12:00AM`).
    pub fn value_text(self, expr: &str, ty: &str) -> String {
        match self {
            Dialect::Postgres => self.as_text(expr),
            Dialect::TSql => match tsql_kind(ty) {
                TKind::Bit => {
                    format!("CASE {expr} WHEN 1 THEN N'true' WHEN 0 THEN N'false' END")
                }
                TKind::Date => format!("CONVERT(nvarchar(max), {expr}, 23)"),
                TKind::DateTime => format!("CONVERT(nvarchar(max), {expr}, 126)"),
                TKind::Float => format!("FORMAT({expr}, 'R', 'en-US')"),
                TKind::Binary | TKind::RowVersion => {
                    format!("CONVERT(nvarchar(max), CAST({expr} AS varbinary(max)), 1)")
                }
                TKind::Other => self.as_text(expr),
            },
        }
    }

    /// An insert of `cols` (already quoted) with `values` (SQL expressions)
    /// that returns the stored key (the quoted `key` column of type
    /// `key_ty`) as text.
    pub fn insert_returning_key(
        self,
        table: &str,
        cols: &[String],
        values: &[String],
        key: &str,
        key_ty: &str,
    ) -> String {
        match self {
            Dialect::Postgres => format!(
                "INSERT INTO {table} ({}) VALUES ({}) RETURNING {}",
                cols.join(", "),
                values.join(", "),
                self.value_text(key, key_ty)
            ),
            Dialect::TSql => format!(
                "INSERT INTO {table} ({}) OUTPUT {} VALUES ({})",
                cols.join(", "),
                self.value_text(&format!("INSERTED.{key}"), key_ty),
                values.join(", ")
            ),
        }
    }

    /// An update of `table` setting `sets` where `cond`, returning the
    /// (new) key as text.
    pub fn update_returning_key(
        self,
        table: &str,
        sets: &str,
        cond: &str,
        key: &str,
        key_ty: &str,
    ) -> String {
        match self {
            Dialect::Postgres => format!(
                "UPDATE {table} SET {sets} WHERE {cond} RETURNING {}",
                self.value_text(key, key_ty)
            ),
            Dialect::TSql => format!(
                "UPDATE {table} SET {sets} OUTPUT {} WHERE {cond}",
                self.value_text(&format!("INSERTED.{key}"), key_ty)
            ),
        }
    }

    /// `expr` (a column of type `ty`) is one of the `n` text parameters
    /// from `first` on. PostgreSQL takes them as one text-array parameter
    /// (`n` is then 1); T-SQL as `n` parameters.
    pub fn in_params(self, expr: &str, first: usize, n: usize, ty: &str) -> String {
        match self {
            Dialect::Postgres => {
                format!(
                    "{expr} = ANY(CAST({}::text[] AS {ty}[]))",
                    self.param(first)
                )
            }
            Dialect::TSql => format!(
                "{expr} IN ({})",
                (first..first + n)
                    .map(|i| self.typed_param(i, ty))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// `value` (a parameter) is one of the `sep`-separated pieces of the
    /// text `text`, compared case-insensitively.
    pub fn in_separated(self, value: &str, text: &str, sep: &str) -> String {
        match self {
            Dialect::Postgres => {
                format!("lower({value}) = ANY(string_to_array(lower({text}), lower({sep})))")
            }
            Dialect::TSql => format!(
                "EXISTS (SELECT 1 FROM STRING_SPLIT({text}, {sep}) s \
                 WHERE lower(s.value) = lower({value}))"
            ),
        }
    }

    /// Starts a transaction.
    pub fn begin(self) -> &'static str {
        match self {
            Dialect::Postgres => "BEGIN",
            Dialect::TSql => "SET XACT_ABORT OFF; BEGIN TRANSACTION",
        }
    }

    /// Commits the transaction.
    pub fn commit(self) -> &'static str {
        match self {
            Dialect::Postgres => "COMMIT",
            Dialect::TSql => "COMMIT TRANSACTION",
        }
    }

    /// Rolls the transaction back.
    pub fn rollback(self) -> &'static str {
        match self {
            Dialect::Postgres => "ROLLBACK",
            Dialect::TSql => "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION",
        }
    }

    /// Marks a savepoint for one row of a batch.
    pub fn savepoint(self) -> &'static str {
        match self {
            Dialect::Postgres => "SAVEPOINT idsync_row",
            Dialect::TSql => "SAVE TRANSACTION idsync_row",
        }
    }

    /// Keeps the row's writes (T-SQL has no release: a no-op check that
    /// the transaction is still open, which fails when the server ended it).
    pub fn release(self) -> &'static str {
        match self {
            Dialect::Postgres => "RELEASE SAVEPOINT idsync_row",
            Dialect::TSql => {
                "IF @@TRANCOUNT = 0 OR XACT_STATE() <> 1 \
                 THROW 50000, 'the batch transaction was ended by the server', 1"
            }
        }
    }

    /// Undoes the row's writes, keeping the batch.
    pub fn rollback_to(self) -> &'static str {
        match self {
            Dialect::Postgres => "ROLLBACK TO SAVEPOINT idsync_row",
            Dialect::TSql => "ROLLBACK TRANSACTION idsync_row",
        }
    }

    /// Inserts the row (`cols` quoted, `values` SQL expressions) or, when a
    /// row with the same `key` (a quoted column, the first of `cols`)
    /// exists, updates its other columns. T-SQL: MERGE under HOLDLOCK, so
    /// two sessions cannot both insert the key.
    pub fn upsert(self, table: &str, cols: &[String], values: &[String]) -> String {
        let key = &cols[0];
        match self {
            Dialect::Postgres => {
                let sets: Vec<String> = cols[1..]
                    .iter()
                    .map(|c| format!("{c} = EXCLUDED.{c}"))
                    .collect();
                let action = if sets.is_empty() {
                    "NOTHING".to_string()
                } else {
                    format!("UPDATE SET {}", sets.join(", "))
                };
                format!(
                    "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({key}) DO {action}",
                    cols.join(", "),
                    values.join(", ")
                )
            }
            Dialect::TSql => {
                let src: Vec<String> = cols
                    .iter()
                    .zip(values)
                    .map(|(c, v)| format!("{v} AS {c}"))
                    .collect();
                let sets: Vec<String> =
                    cols[1..].iter().map(|c| format!("t.{c} = s.{c}")).collect();
                let update = if sets.is_empty() {
                    String::new()
                } else {
                    format!(" WHEN MATCHED THEN UPDATE SET {}", sets.join(", "))
                };
                format!(
                    "MERGE INTO {table} WITH (HOLDLOCK) AS t USING (SELECT {}) AS s \
                     ON t.{key} = s.{key}{update} \
                     WHEN NOT MATCHED THEN INSERT ({}) VALUES ({});",
                    src.join(", "),
                    cols.join(", "),
                    cols.iter()
                        .map(|c| format!("s.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
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

/// What a SQL Server type needs to print naturally or be read back.
#[derive(PartialEq, Eq, Debug)]
enum TKind {
    Bit,
    Date,
    DateTime,
    Float,
    Binary,
    RowVersion,
    Other,
}

fn tsql_kind(ty: &str) -> TKind {
    let t = ty.trim().to_ascii_lowercase();
    let base = t.split('(').next().unwrap_or("").trim();
    match base {
        "bit" => TKind::Bit,
        "date" => TKind::Date,
        "datetime" | "datetime2" | "smalldatetime" | "datetimeoffset" => TKind::DateTime,
        "float" | "real" => TKind::Float,
        "binary" | "varbinary" | "image" => TKind::Binary,
        "rowversion" | "timestamp" => TKind::RowVersion,
        _ => TKind::Other,
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
            TSql.insert_returning_key(
                "[t]",
                &["[id]".into(), "[n]".into()],
                &["@P1".into(), "@P2".into()],
                "[id]",
                "int"
            ),
            "INSERT INTO [t] ([id], [n]) OUTPUT CAST(INSERTED.[id] AS nvarchar(max)) \
             VALUES (@P1, @P2)"
        );
        assert_eq!(
            TSql.definite("[a] = @P1"),
            "(CASE WHEN ([a] = @P1) THEN 1 ELSE 0 END) = 1"
        );
    }

    #[test]
    fn tsql_values_print_naturally_and_read_back() {
        assert_eq!(
            TSql.value_text("[active]", "bit"),
            "CASE [active] WHEN 1 THEN N'true' WHEN 0 THEN N'false' END"
        );
        assert_eq!(
            TSql.value_text("[hired]", "date"),
            "CONVERT(nvarchar(max), [hired], 23)"
        );
        assert_eq!(
            TSql.value_text("[at]", "datetime2(7)"),
            "CONVERT(nvarchar(max), [at], 126)"
        );
        assert_eq!(
            TSql.value_text("[rate]", "float"),
            "FORMAT([rate], 'R', 'en-US')"
        );
        assert_eq!(
            TSql.value_text("[rv]", "rowversion"),
            "CONVERT(nvarchar(max), CAST([rv] AS varbinary(max)), 1)"
        );
        assert_eq!(
            TSql.value_text("[salary]", "decimal(10,2)"),
            "CAST([salary] AS nvarchar(max))"
        );
        assert_eq!(
            Postgres.value_text("\"b\"", "boolean"),
            "CAST(\"b\" AS text)"
        );
        // a rowversion cursor ("0x00000000000007D1") is compared as binary
        assert_eq!(
            TSql.typed_param(1, "timestamp"),
            "CONVERT(binary(8), @P1, 1)"
        );
        assert_eq!(TSql.typed_param(1, "bit"), "CAST(@P1 AS bit)");
    }

    #[test]
    fn tsql_update_output_children_separators_and_transactions() {
        assert_eq!(
            TSql.update_returning_key("[t]", "[n] = @P2", "[id] = CAST(@P1 AS int)", "[id]", "int"),
            "UPDATE [t] SET [n] = @P2 OUTPUT CAST(INSERTED.[id] AS nvarchar(max)) \
             WHERE [id] = CAST(@P1 AS int)"
        );
        assert_eq!(
            Postgres.update_returning_key("\"t\"", "x", "y", "\"id\"", "integer"),
            "UPDATE \"t\" SET x WHERE y RETURNING CAST(\"id\" AS text)"
        );
        assert_eq!(
            TSql.in_params("ch.[k]", 2, 3, "int"),
            "ch.[k] IN (CAST(@P2 AS int), CAST(@P3 AS int), CAST(@P4 AS int))"
        );
        assert_eq!(
            Postgres.in_params("\"k\"", 1, 1, "integer"),
            "\"k\" = ANY(CAST($1::text[] AS integer[]))"
        );
        assert_eq!(
            TSql.in_separated("@P1", "[mail]", "@P2"),
            "EXISTS (SELECT 1 FROM STRING_SPLIT([mail], @P2) s WHERE lower(s.value) = lower(@P1))"
        );
        assert_eq!(TSql.savepoint(), "SAVE TRANSACTION idsync_row");
        assert_eq!(TSql.rollback_to(), "ROLLBACK TRANSACTION idsync_row");
        assert!(TSql.begin().ends_with("BEGIN TRANSACTION"));
        assert!(TSql.release().contains("XACT_STATE()"));
    }

    #[test]
    fn upserts_merge_in_tsql_and_on_conflict_in_postgres() {
        let cols = ["[id]".to_string(), "[v]".to_string()];
        let vals = ["@P1".to_string(), "@P2".to_string()];
        assert_eq!(
            TSql.upsert("[kv]", &cols, &vals),
            "MERGE INTO [kv] WITH (HOLDLOCK) AS t USING (SELECT @P1 AS [id], @P2 AS [v]) AS s \
             ON t.[id] = s.[id] WHEN MATCHED THEN UPDATE SET t.[v] = s.[v] \
             WHEN NOT MATCHED THEN INSERT ([id], [v]) VALUES (s.[id], s.[v]);"
        );
        let pcols = ["\"id\"".to_string(), "\"v\"".to_string()];
        let pvals = ["$1".to_string(), "$2".to_string()];
        assert_eq!(
            Postgres.upsert("\"kv\"", &pcols, &pvals),
            "INSERT INTO \"kv\" (\"id\", \"v\") VALUES ($1, $2) ON CONFLICT (\"id\") \
             DO UPDATE SET \"v\" = EXCLUDED.\"v\""
        );
    }

    #[test]
    fn tsql_paging_is_keyset_with_top() {
        // keyset, not OFFSET/FETCH: a page never skips or repeats rows while the table changes
        let sql = TSql.page(
            "[a]",
            "[t]",
            "1=1",
            "[id]",
            Some(TSql.typed_param(1, "int")),
            2,
        );
        assert_eq!(
            sql,
            "SELECT TOP (2) [a] FROM [t] WHERE (1=1) AND [id] > CAST(@P1 AS int) ORDER BY [id]"
        );
        assert!(!sql.contains("OFFSET"));
    }
}
