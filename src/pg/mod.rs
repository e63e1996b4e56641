//! PostgreSQL: connection strings and TLS (`url`, `connect`), local clusters drillbook
//! creates for drills and tests (`cluster`), values read from rows (`value`), and quoting.

pub mod authid;
pub mod cluster;
pub mod connect;
pub mod url;
pub mod value;

pub use connect::{connect, ConnectError};

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
