//! `fingerprint`: production's per-table row counts and content hashes in a snapshot that
//! is exactly one WAL position (a temporary logical slot's exported snapshot), for a restore
//! to that position to match exactly (`compare: {fingerprint: <step id>}`).

use schemars::JsonSchema;
use serde::Deserialize;

use super::compare::Tables;
use super::{db_target, output, Effects, Measure, Output, Spec};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// The production database: a target name (`postgres`, `local` or `neon`) or a
    /// connection string. It needs `wal_level = logical` (on Neon: the project's logical
    /// replication enabled) and a role with the REPLICATION attribute.
    pub db: String,
    /// `all` (every user table) or a list (`orders`, `sales.invoices`).
    #[serde(default)]
    pub tables: Tables,
    /// Tables to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Connections hashing tables at once, all in the same snapshot (default 2).
    pub concurrency: Option<usize>,
}

impl Spec for Fingerprint {
    const OUTPUTS: &'static [Output] = &[
        output(
            "lsn",
            "the exact WAL position the snapshot corresponds to (a restore target)",
        ),
        output(
            "taken_at",
            "when the snapshot was taken (the server's clock), RFC 3339 UTC",
        ),
        output(
            "tables",
            "per table (`schema.table`): `rows` and `hash`, computed as `compare` computes them",
        ),
        output(
            "server_version",
            "the server's major version (hashes compare within one)",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "local", "neon"];

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    fn target(&self) -> Option<&str> {
        db_target(&self.db)
    }

    fn summary(&self) -> String {
        let tables = match &self.tables {
            Tables::All => "all tables".to_owned(),
            Tables::List(l) => l.join(", "),
        };
        format!(
            "fingerprint {} ({tables}) at an exact WAL position",
            crate::redact::mask_passwords(&self.db)
        )
    }
}
