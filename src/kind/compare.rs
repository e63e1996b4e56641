//! `compare`: a restored database against its source. Per table: existence, row counts
//! (exact, or within a tolerance, or restored ≤ source for restores to an earlier time),
//! content checksums, the differing keys when checksums differ, a sample of rows value by
//! value; and the schema (columns, keys, indexes, constraints, sequences).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{db_target, one_of_forms, output, Effects, Measure, Output, Spec, Verifies};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// The database restored from (usually production): a target name or connection string.
    /// Leave it out with `fingerprint`.
    #[serde(default)]
    pub source: String,
    /// The restored copy: a target name or connection string, e.g.
    /// `"{{ steps.restore.connection_uri }}"`.
    pub restored: String,
    /// `all` (every user table of the source) or a list (`orders`, `sales.invoices`).
    #[serde(default)]
    pub tables: Tables,
    /// Tables to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Compare row counts: `true` (equal, the default), `false`, or
    /// `{tolerance: "1%" | 100, direction: equal | restored_le_source}`.
    #[serde(default)]
    pub row_counts: RowCounts,
    /// Content checksums: `true` (every compared table), `false` (default), or a list of
    /// tables (e.g. those untouched since the recovery target).
    #[serde(default)]
    pub checksums: Selection,
    /// Rows compared value by value, by primary key: a count for every table with a primary
    /// key, or `{rows: N, tables: [...]}`.
    #[serde(default)]
    pub samples: Samples,
    /// Compare the schema: columns, types, nullability, keys, indexes, constraints,
    /// sequences (default true).
    #[serde(default = "yes")]
    pub schema: bool,
    /// Connections per database, and so tables checked at once (default 2).
    pub concurrency: Option<usize>,
    /// How many differing keys to report per table (default 10; 0 skips the search).
    pub differing_keys: Option<usize>,
    /// The id of a `fingerprint` step: compare the restored copy's rows and hashes with the
    /// ones it took at its exact LSN, instead of with live production (`source`).
    pub fingerprint: Option<String>,
    /// Compare as of the recovery target, against a source that kept changing after it:
    /// `{target, changed: {table: column, "*": column}, append_only: [tables]}`.
    pub as_of: Option<AsOf>,
}

/// What "as of the target" means per table: rows whose `changed` column is at or before the
/// target must be in the restored copy unchanged; later ones are production moving on.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsOf {
    /// The recovery target time: RFC 3339 or relative (`now-24h`); usually
    /// `"{{ params.target_time }}"`.
    pub target: String,
    /// Per table, a timestamp column every insert and update sets (e.g. `updated_at`);
    /// `"*"` names the column for every table that has it.
    #[serde(default)]
    pub changed: std::collections::BTreeMap<String, String>,
    /// Tables whose rows are only ever added (and deleted), never updated.
    #[serde(default)]
    pub append_only: Vec<String>,
    /// How long a writing transaction may run: a row stamped less than this before the
    /// target may have committed after it, so it is neither required nor failed
    /// (default `5s`).
    pub in_flight: Option<crate::duration::Duration>,
}

impl AsOf {
    /// The `changed` column named for `table`, and whether it was named for it alone (not
    /// through `"*"`).
    pub fn changed_column(&self, table: &str) -> Option<(&str, bool)> {
        self.changed
            .iter()
            .find(|(t, _)| t.as_str() != "*" && same_table(t, table))
            .map(|(_, c)| (c.as_str(), true))
            .or_else(|| self.changed.get("*").map(|c| (c.as_str(), false)))
    }

    pub fn is_append_only(&self, table: &str) -> bool {
        self.append_only.iter().any(|t| same_table(t, table))
    }
}

fn yes() -> bool {
    true
}

/// `all`, or a list of tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tables {
    #[default]
    All,
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for Tables {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tables, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Tables;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all` or a list of tables")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Tables, E> {
                if s == "all" {
                    Ok(Tables::All)
                } else {
                    Err(E::custom(format!(
                        "expected `all` or a list of tables, found `{s}`"
                    )))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Tables, A::Error> {
                Vec::<String>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Tables::List)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Tables {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Tables".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [{"const": "all"}, {"type": "array", "items": {"type": "string"}}]})
    }
}

#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum Selection {
    Every(bool),
    Only(Vec<String>),
}

one_of_forms!(Selection, "`true`, `false` or a list of tables", {
    bool => Every(bool),
    seq => Only(Vec<String>),
});

impl Default for Selection {
    fn default() -> Selection {
        Selection::Every(false)
    }
}

impl Selection {
    /// Whether `table` (schema-qualified) is selected.
    pub fn includes(&self, table: &str) -> bool {
        match self {
            Selection::Every(b) => *b,
            Selection::Only(list) => list.iter().any(|t| same_table(t, table)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum RowCounts {
    Enabled(bool),
    Rule(CountRule),
}

one_of_forms!(RowCounts, "`true`, `false` or a mapping `{tolerance, direction}`", {
    bool => Enabled(bool),
    map => Rule(CountRule),
});

impl Default for RowCounts {
    fn default() -> RowCounts {
        RowCounts::Enabled(true)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountRule {
    /// Allowed difference: a row count (`100`) or a percentage of the source (`"1%"`).
    pub tolerance: Option<Tolerance>,
    /// `equal` (default) or `restored_le_source`: a restore to an earlier time may have
    /// fewer rows, never more.
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum Tolerance {
    Rows(u64),
    Percent(String),
}

one_of_forms!(Tolerance, "a number of rows (`100`) or a percentage (`\"1%\"`)", {
    int => Rows(u64),
    str => Percent(String),
});

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Equal,
    RestoredLeSource,
}

#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum Samples {
    Rows(usize),
    Rule(SampleRule),
}

one_of_forms!(Samples, "a number of rows or a mapping `{rows, tables}`", {
    int => Rows(usize),
    map => Rule(SampleRule),
});

impl Default for Samples {
    fn default() -> Samples {
        Samples::Rows(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleRule {
    pub rows: usize,
    /// Only these tables (default: every compared table with a primary key).
    pub tables: Option<Vec<String>>,
}

/// `orders` matches `public.orders`.
pub fn same_table(given: &str, qualified: &str) -> bool {
    given == qualified || (!given.contains('.') && qualified == format!("public.{given}"))
}

impl Spec for Compare {
    const OUTPUTS: &'static [Output] = &[
        output(
            "tables",
            "per table: row counts, checksum, differing keys, samples, findings",
        ),
        output("tables_compared", "how many tables were compared"),
        output("tables_failed", "how many of them differ"),
        output(
            "schema_findings",
            "differences outside the tables (sequences, extra tables)",
        ),
        output(
            "as_of_target",
            "with `as_of`: the target compared against, RFC 3339 UTC",
        ),
        output(
            "notes",
            "with `as_of`: what production did after the target (not failures)",
        ),
        output(
            "report",
            "the comparison as a table a person reads at a glance",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Data)
    }

    fn target(&self) -> Option<&str> {
        db_target(&self.restored)
    }

    fn check(&self) -> Result<(), super::Invalid> {
        match (self.source.is_empty(), &self.fingerprint) {
            (true, None) => Err(super::Invalid::whole(
                "give `source` (the database restored from) or `fingerprint` (a fingerprint step's id)",
            )),
            (false, Some(_)) => Err(super::Invalid::at(
                "fingerprint",
                "give either `source` or `fingerprint`, not both",
            )),
            _ => Ok(()),
        }
    }

    fn targets(&self) -> Vec<&str> {
        [&self.source, &self.restored]
            .into_iter()
            .filter_map(|d| db_target(d))
            .collect()
    }

    fn summary(&self) -> String {
        let tables = match &self.tables {
            Tables::All => "all tables".to_owned(),
            Tables::List(l) => l.join(", "),
        };
        if let Some(fp) = &self.fingerprint {
            return format!(
                "compare {} with fingerprint `{fp}` ({tables}): row counts and checksums",
                crate::redact::mask_passwords(&self.restored)
            );
        }
        let mut what = Vec::new();
        if self.row_counts != RowCounts::Enabled(false) {
            what.push("row counts");
        }
        if self.checksums != Selection::Every(false) {
            what.push("checksums");
        }
        if self.samples != Samples::Rows(0) {
            what.push("samples");
        }
        if self.schema {
            what.push("schema");
        }
        if self.as_of.is_some() {
            what.push("as of the target");
        }
        format!(
            "compare {} with {} ({tables}): {}",
            crate::redact::mask_passwords(&self.restored),
            crate::redact::mask_passwords(&self.source),
            what.join(", ")
        )
    }
}
