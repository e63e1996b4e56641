//! `drillbook schema`: a valid draft-07 JSON Schema that accepts the shipped runbooks and
//! rejects unknown fields, checked with an independent validator.

use crate::support::{root, Cli};

fn schema() -> serde_json::Value {
    Cli::new().args(["schema"]).run().code(0).json()
}

fn yaml_file(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read runbook");
    serde_yaml::from_str(&text).expect("yaml")
}

#[test]
fn schema_is_valid_draft7_and_accepts_shipped_runbooks() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(
        jsonschema::draft7::meta::is_valid(&schema),
        "the schema itself is not valid draft-07"
    );
    let validator = jsonschema::draft7::new(&schema).expect("compiles");
    let mut files: Vec<_> = std::fs::read_dir(root().join("runbooks"))
        .expect("runbooks")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.extend(
        std::fs::read_dir(root().join("tests/fixtures/valid"))
            .expect("valid fixtures")
            .filter_map(|e| e.ok().map(|e| e.path())),
    );
    let mut checked = 0;
    for file in files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
    {
        let doc = yaml_file(file);
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        checked += 1;
    }
    assert!(checked >= 2, "checked {checked} runbooks");
}

#[test]
fn schema_rejects_unknown_fields_and_kinds() {
    let validator = jsonschema::draft7::new(&schema()).expect("compiles");
    let mut doc = yaml_file(&root().join("runbooks/hello.yaml"));
    assert!(validator.is_valid(&doc));
    doc["titel"] = "typo".into();
    assert!(
        !validator.is_valid(&doc),
        "unknown top-level field accepted"
    );

    let mut doc = yaml_file(&root().join("runbooks/hello.yaml"));
    doc["procedures"]["smoke"]["steps"][0]["timout"] = "10m".into();
    assert!(!validator.is_valid(&doc), "unknown step field accepted");

    let mut doc = yaml_file(&root().join("runbooks/hello.yaml"));
    let step = doc["procedures"]["smoke"]["steps"][0]
        .as_object_mut()
        .expect("step");
    let payload = step.remove("shell").expect("shell step");
    step.insert("shel".into(), payload);
    assert!(!validator.is_valid(&doc), "unknown step kind accepted");

    let mut doc = yaml_file(&root().join("runbooks/hello.yaml"));
    doc["procedures"]["smoke"]["steps"][1]["shell"]["env"]["X"] =
        serde_json::json!({"nested": true});
    assert!(
        !validator.is_valid(&doc),
        "a mapping as an env value accepted"
    );
}

/// Every field name the schema knows is documented in docs/runbook-format.md, so the
/// reference cannot silently fall behind the format.
#[test]
fn every_schema_field_is_documented() {
    fn names(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Object(props)) = m.get("properties") {
                    out.extend(props.keys().cloned());
                }
                m.values().for_each(|x| names(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| names(x, out)),
            _ => {}
        }
    }
    let mut fields = std::collections::BTreeSet::new();
    names(&schema(), &mut fields);
    let doc = std::fs::read_to_string(root().join("docs/runbook-format.md"))
        .expect("docs/runbook-format.md");
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(fields.len() > 50, "found only {} fields", fields.len());
    assert!(
        missing.is_empty(),
        "fields missing from docs/runbook-format.md: {missing:?}"
    );
}
