//! The runbook document's context (placeholder until the document context lands: the
//! signature below is what `drillbook render` calls).

/// Everything `runbook.md.j2` reads.
pub fn context(
    runbook: &crate::runbook::Runbook,
    records: &[crate::engine::record::DrillRecord],
    as_of: chrono::DateTime<chrono::Utc>,
    as_of_source: &str,
) -> serde_json::Value {
    serde_json::json!({
        "runbook": { "title": runbook.title },
        "records": records.len(),
        "as_of": crate::timestamp::rfc3339(as_of),
        "as_of_source": as_of_source,
    })
}
