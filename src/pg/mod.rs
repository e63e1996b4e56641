//! PostgreSQL: connection strings and TLS (`url`, `connect`), local clusters drillbook
//! creates for drills and tests (`cluster`), values read from rows (`value`), and quoting.

pub mod authid;
pub mod cluster;
pub mod connect;
pub mod replication;
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

/// Makes every later transaction of the session read-only by default
/// (`default_transaction_read_only`), for connections that run queries a runbook wrote and
/// must not write.
pub async fn read_only_session(
    client: &tokio_postgres::Client,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await
}
