//! What the catalogs say: the user tables with their columns and primary keys, which column
//! types can be hashed, and the schema objects compared between source and restored. drillbook's
//! own tables (`drillbook_*`: canaries, history) are never compared: they differ by design.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio_postgres::Client;

use crate::pg::connect::describe;

/// A user table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct Table {
    /// `schema.table`.
    pub name: String,
    pub columns: Vec<Column>,
    /// Primary key columns, in key order (empty without a primary key).
    pub primary_key: Vec<Column>,
    /// The planner's row estimate (for sampling).
    pub estimate: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type` of the column, e.g. `numeric(12,2)`.
    pub ty: String,
}

const TABLES: &str = "
SELECT n.nspname || '.' || c.relname, c.reltuples::float8,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
       coalesce((SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint p
                 CROSS JOIN LATERAL unnest(p.conkey) WITH ORDINALITY k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                 WHERE p.conrelid = c.oid AND p.contype = 'p'), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND c.relname NOT LIKE 'drillbook\\_%'
ORDER BY 1";

/// Every user table (partitioned tables as a whole, not their partitions).
pub async fn tables(client: &Client) -> Result<BTreeMap<String, Table>, String> {
    let rows = client
        .query(TABLES, &[])
        .await
        .map_err(|e| format!("listing tables: {}", describe(&e)))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let name: String = r.get(0);
        let names: Vec<String> = r.get(2);
        let types: Vec<String> = r.get(3);
        let pk: Vec<String> = r.get(4);
        let columns: Vec<Column> = names
            .into_iter()
            .zip(types)
            .map(|(name, ty)| Column { name, ty })
            .collect();
        let primary_key = pk
            .iter()
            .filter_map(|k| columns.iter().find(|c| &c.name == k).cloned())
            .collect();
        out.insert(
            name.clone(),
            Table {
                name,
                columns,
                primary_key,
                estimate: r.get(1),
            },
        );
    }
    Ok(out)
}

/// Which of these types have an extended hash function (`json`, `point`, `xml` do not):
/// probed with a NULL of each type, once per type.
pub async fn hashable(client: &Client, types: &BTreeSet<String>) -> HashMap<String, TypeHash> {
    let mut out = HashMap::new();
    for ty in types {
        let probe = format!("SELECT hash_record_extended(ROW(NULL::{ty}), 0)");
        let how = if client.query_one(probe.as_str(), &[]).await.is_err() {
            TypeHash::Text
        } else {
            match client.query_one(HASH_FUNCTION, &[ty]).await {
                Ok(row) => match (row.get::<_, Option<String>>(0), row.get::<_, String>(1)) {
                    (Some(f), _) => TypeHash::Function(f, "{}"),
                    // the polymorphic functions the type cache uses for these (the probe
                    // above has checked that an array's elements hash)
                    (None, base) if base.ends_with("[]") => {
                        TypeHash::Function("hash_array_extended".into(), "{}")
                    }
                    (None, _) if row.get::<_, String>(2) == "e" => {
                        TypeHash::Function("hashenumextended".into(), "{}")
                    }
                    // lossless conversions to a type with a function of its own
                    (None, base) if base == "character varying" => {
                        TypeHash::Function("hashtextextended".into(), "{}")
                    }
                    (None, base) if base == "timestamp with time zone" => TypeHash::Function(
                        "timestamp_hash_extended".into(),
                        "{} AT TIME ZONE 'UTC'",
                    ),
                    (None, base) if base == "date" => {
                        TypeHash::Function("hashint4extended".into(), DAYS)
                    }
                    (None, base) if base == "boolean" => {
                        TypeHash::Function("hashint4extended".into(), "{}::int4")
                    }
                    _ => TypeHash::Record,
                },
                Err(_) => TypeHash::Record,
            }
        };
        out.insert(ty.clone(), how);
    }
    out
}

/// A date as the number it is stored as (days since 2000-01-01; `infinity` and
/// `-infinity` as the largest and smallest `int4`, which no finite date is; NULL stays NULL):
/// date's hash operator class hashes that number with `hashint4extended`, which a date
/// cannot be passed to without this conversion, and `date - date` refuses infinities.
const DAYS: &str = "CASE WHEN isfinite({}) THEN {} - date '2000-01-01' \
     WHEN {} > date '2000-01-01' THEN 2147483647 WHEN {} < date '2000-01-01' THEN -2147483648 END";

/// How a column's values are hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeHash {
    /// The extended hash function of the type's default hash operator class, called
    /// directly (`hashint4extended`, `hashtextextended`): the fastest. The second field is
    /// the value's expression, `{}` standing for the column, converted first where it must
    /// be, losslessly (a `timestamptz` `{} AT TIME ZONE 'UTC'`, a `boolean` `{}::int4`, a
    /// `date` its day number). Arrays and enums through the polymorphic functions
    /// (`hash_array_extended`, `hashenumextended`).
    Function(String, &'static str),
    /// The type hashes, but not through a function SQL can call on it (a domain, `bytea`,
    /// whose function takes `internal`): through `hash_record_extended` of a one-field row,
    /// which builds a row per value (about 65 ns a value).
    Record,
    /// No hash function (`json`, `point`): its text form is hashed.
    Text,
}

/// The extended hash support function (number 2) of the default hash operator class whose
/// input type is exactly the given type, when the function is declared for that very type
/// (`timestamptz` borrows `timestamp_hash_extended(timestamp, …)`, which a call cannot name
/// without a cast that converts); then the type's name without modifiers, and its
/// `typtype` (`e` for an enum).
const HASH_FUNCTION: &str = "
SELECT (SELECT p.amproc::regproc::text
        FROM pg_opclass oc
        JOIN pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'
        JOIN pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amprocnum = 2
             AND p.amproclefttype = oc.opcintype AND p.amprocrighttype = oc.opcintype
        JOIN pg_proc f ON f.oid = p.amproc AND f.proargtypes[0] = oc.opcintype
        WHERE oc.opcdefault AND oc.opcintype = $1::text::regtype
        LIMIT 1),
       $1::text::regtype::text,
       (SELECT typtype::text FROM pg_type WHERE oid = $1::text::regtype)";

/// Schema objects, as (kind, table, name) -> definition. Sequences' values are separate.
pub type Objects = BTreeMap<(String, String, String), String>;

const OBJECTS: &str = "
SELECT 'column', n.nspname || '.' || c.relname, a.attname::text,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' AND c.relname NOT LIKE 'drillbook\\_%'
UNION ALL
SELECT CASE p.contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key' WHEN 'u' THEN 'unique constraint'
                      WHEN 'c' THEN 'check constraint' ELSE 'constraint' END,
       n.nspname || '.' || c.relname, p.conname::text, pg_get_constraintdef(p.oid)
FROM pg_constraint p JOIN pg_class c ON c.oid = p.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' AND c.relname NOT LIKE 'drillbook\\_%'
UNION ALL
SELECT 'index', n.nspname || '.' || c.relname, i.relname::text, pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' AND c.relname NOT LIKE 'drillbook\\_%'
UNION ALL
SELECT 'sequence', '', s.schemaname || '.' || s.sequencename,
       format('%s increment %s min %s max %s cycle %s', s.data_type, s.increment_by, s.min_value, s.max_value, s.cycle)
FROM pg_sequences s WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
  AND s.sequencename NOT LIKE 'drillbook\\_%'";

pub async fn objects(client: &Client) -> Result<Objects, String> {
    let rows = client
        .query(OBJECTS, &[])
        .await
        .map_err(|e| format!("reading the schema: {}", describe(&e)))?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect())
}

/// Sequence name -> (last value (None when never used), increment).
pub async fn sequence_values(
    client: &Client,
) -> Result<BTreeMap<String, (Option<i64>, i64)>, String> {
    let rows = client
        .query(
            "SELECT schemaname || '.' || sequencename, last_value, increment_by FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .map_err(|e| format!("reading sequences: {}", describe(&e)))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

/// The major version (`server_version_num / 10000`): hash functions are only comparable
/// within one major version.
pub async fn major_version(client: &Client) -> Result<i32, String> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .map_err(|e| describe(&e))?;
    Ok(row.get(0))
}
