//! Result checks: what proves a restore is good. `compare` (source vs restored: tables, row
//! counts, content checksums, samples, schema), `freshness` (the recovery point, RPO), and
//! `invariants` (named SQL truths that must hold). Each is a step kind.

pub mod compare;
pub mod freshness;

/// `schema.table` or `table` as a quoted SQL identifier.
pub fn quote_table(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// Quotes an identifier for SQL (doubling embedded quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
