//! PostgreSQL: connection strings and TLS (`url`, `connect`), and local clusters drillbook
//! creates for drills and tests (`cluster`).

pub mod cluster;
pub mod connect;
pub mod url;
pub mod value;

pub use connect::{connect, ConnectError};
