//! The JSON Schema of the runbook format (`drillbook schema`), for editors
//! (yaml-language-server) and CI. Leaf parts come from the serde mirrors' derived schemas;
//! composite parts (step, target, check, alert: common fields plus exactly one kind key) are
//! assembled here as `oneOf` over the kinds, each closed with `additionalProperties: false`.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::raw;
use super::validate::{
    ALERT_FIELDS, CHECK_FIELDS, PARAM_FIELDS, PROCEDURE_FIELDS, RUNBOOK_FIELDS, STEP_FIELDS,
    TARGET_FIELDS,
};
use crate::duration::Duration;
use crate::kind::StepKind;

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn sub<T: JsonSchema>(g: &mut SchemaGenerator, description: &str) -> Value {
    let mut v = g.subschema_for::<T>().to_value();
    if !description.is_empty() {
        if let Some(obj) = v.as_object_mut() {
            // a $ref with siblings is ignored by draft-07 validators: wrap it
            if obj.contains_key("$ref") {
                return json!({"allOf": [v], "description": description});
            }
            obj.insert("description".into(), description.into());
        }
    }
    v
}

/// `oneOf` over kinds: each alternative has the common properties plus its own kind key.
fn keyed(common: &Map<String, Value>, required: &[&str], kinds: Vec<(&str, Value)>) -> Value {
    let alternatives: Vec<Value> = kinds
        .into_iter()
        .map(|(name, schema)| {
            let mut props = common.clone();
            props.insert(name.to_owned(), schema);
            let mut req: Vec<&str> = required.to_vec();
            req.push(name);
            json!({"type": "object", "title": name, "properties": props, "required": req, "additionalProperties": false})
        })
        .collect();
    json!({"oneOf": alternatives})
}

fn props(pairs: Vec<(&str, Value)>, fields: &[&str]) -> Map<String, Value> {
    debug_assert_eq!(
        pairs.len(),
        fields.len(),
        "schema and reader disagree on fields"
    );
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The whole schema, draft-07.
pub fn runbook_schema() -> Value {
    let mut g = SchemaSettings::draft07().into_generator();
    let step_kinds = StepKind::schemas(&mut g);
    let kinds = |with: &[(&'static str, schemars::Schema)]| {
        with.iter()
            .map(|(n, s)| (*n, s.clone().to_value()))
            .collect::<Vec<_>>()
    };

    let step_common = props(
        vec![
            (
                "id",
                json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$", "description": "Step id; later steps read its outputs as `steps.<id>.<output>`."}),
            ),
            (
                "title",
                string("Short title, shown in progress lines and the document."),
            ),
            (
                "description",
                string("Markdown: what a person does by hand for this step."),
            ),
            (
                "when",
                string("Expression; the step runs only when it is true, e.g. `params.full`."),
            ),
            (
                "timeout",
                sub::<Duration>(
                    &mut g,
                    "Longest the step may run (each attempt); more than 0s, at most 7d.",
                ),
            ),
            (
                "retries",
                sub::<raw::Retries>(&mut g, "Retry a failing step with exponential backoff."),
            ),
            (
                "continue_on_error",
                json!({"type": "boolean", "description": "A failure of this step does not stop the procedure (it still fails the run)."}),
            ),
            (
                "rto",
                json!({"enum": ["start", "end"], "description": "Marks where the RTO clock starts or stops."}),
            ),
            (
                "destructive",
                json!({"type": "boolean", "description": "The step destroys or overwrites data: needs approval; refused in drills against protected targets."}),
            ),
        ],
        STEP_FIELDS,
    );
    let step = keyed(&step_common, &[], kinds(&step_kinds));

    let check_common = props(
        vec![
            (
                "id",
                json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}),
            ),
            ("title", string("Short title.")),
            (
                "warn",
                json!({"description": "Threshold for WARNING (meaning depends on the kind)."}),
            ),
            (
                "critical",
                json!({"description": "Threshold for CRITICAL (meaning depends on the kind)."}),
            ),
            (
                "timeout",
                sub::<Duration>(
                    &mut g,
                    "Longest the check may run; more than 0s, at most 7d.",
                ),
            ),
        ],
        CHECK_FIELDS,
    );
    let check = keyed(&check_common, &["id"], kinds(&step_kinds));

    let target_common = props(
        vec![
            (
                "protected",
                json!({"type": "boolean", "description": "Destructive steps against it are refused in drills (every destructive step needs approval)."}),
            ),
            ("description", string("What this target is.")),
        ],
        TARGET_FIELDS,
    );
    let target = keyed(
        &target_common,
        &[],
        vec![
            ("postgres", sub::<raw::PostgresTarget>(&mut g, "")),
            ("neon", sub::<raw::NeonTarget>(&mut g, "")),
            ("local", sub::<raw::LocalTarget>(&mut g, "")),
        ],
    );

    let alert_common = props(
        vec![
            (
                "on",
                json!({"type": "array", "items": sub::<raw::AlertEvent>(&mut g, ""), "description": "Events that fire the alert; default `[failure]`."}),
            ),
            (
                "repeat",
                sub::<Duration>(
                    &mut g,
                    "Do not resend an identical failure more often than this.",
                ),
            ),
        ],
        ALERT_FIELDS,
    );
    let alert = keyed(
        &alert_common,
        &[],
        vec![
            ("slack", sub::<raw::SlackAlert>(&mut g, "")),
            ("webhook", sub::<raw::WebhookAlert>(&mut g, "")),
            ("betterstack", sub::<raw::BetterstackAlert>(&mut g, "")),
            ("pagerduty", sub::<raw::PagerdutyAlert>(&mut g, "")),
            ("email", sub::<raw::EmailAlert>(&mut g, "")),
        ],
    );

    let scalar = json!({"type": ["string", "number", "boolean"]});
    let param = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["type"],
        "properties": props(vec![
            ("type", sub::<raw::ParamType>(&mut g, "")),
            ("default", json!({"allOf": [scalar], "description": "Default value; without one, `--param` must give it."})),
            ("description", string("What the parameter means.")),
            ("secret", json!({"type": "boolean", "description": "Redact the value in output and records."})),
        ], PARAM_FIELDS),
    });
    let procedure = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["title", "kind", "steps"],
        "properties": props(vec![
            ("title", string("Title of the procedure.")),
            ("description", string("Markdown: when and why to run it.")),
            ("kind", sub::<raw::ProcedureKind>(&mut g, "")),
            ("schedule", string("When it runs unattended: five-field cron, UTC, e.g. `0 9 1 * *`.")),
            ("params", json!({"type": "object", "additionalProperties": {"$ref": "#/definitions/Param"}, "propertyNames": {"pattern": "^[a-z_][a-z0-9_]*$"}})),
            ("steps", json!({"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/Step"}})),
            ("cleanup", json!({"type": "array", "items": {"$ref": "#/definitions/Step"}, "description": "Steps that always run at the end: after success, failure, timeout or interruption."})),
        ], PROCEDURE_FIELDS),
    });

    let root_props = props(
        vec![
            (
                "version",
                json!({"const": 1, "description": "Format version: 1."}),
            ),
            (
                "name",
                json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$", "description": "Runbook id: lowercase letters, digits and `-`."}),
            ),
            ("title", string("Document title.")),
            ("owner", string("Team or person responsible.")),
            (
                "description",
                string("Markdown overview, rendered into the document."),
            ),
            ("objectives", sub::<raw::Objectives>(&mut g, "")),
            (
                "targets",
                json!({"type": "object", "additionalProperties": {"$ref": "#/definitions/Target"}, "description": "What procedures act on, by name."}),
            ),
            ("backup_policy", sub::<raw::BackupPolicy>(&mut g, "")),
            (
                "secrets",
                json!({"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}, "description": "More environment variables whose values are secrets, masked in every output, record and log (besides every variable whose name contains KEY, TOKEN, SECRET, PASSWORD, PASSWD, PASS, WEBHOOK, DSN, CREDENTIAL, AUTH, PRIVATE, HEARTBEAT or ROUTING)."}),
            ),
            (
                "checks",
                json!({"type": "array", "items": {"$ref": "#/definitions/Check"}, "description": "Health checks run by `drillbook check`."}),
            ),
            (
                "procedures",
                json!({"type": "object", "additionalProperties": {"$ref": "#/definitions/Procedure"}, "propertyNames": {"pattern": "^[a-z0-9][a-z0-9-]*$"}}),
            ),
            (
                "scenarios",
                json!({"type": "array", "items": sub::<raw::Scenario>(&mut g, "")}),
            ),
            (
                "alerts",
                json!({"type": "array", "items": {"$ref": "#/definitions/Alert"}}),
            ),
        ],
        RUNBOOK_FIELDS,
    );

    let mut definitions: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    for (name, schema) in [
        ("Step", step),
        ("Check", check),
        ("Target", target),
        ("Alert", alert),
        ("Param", param),
        ("Procedure", procedure),
    ] {
        definitions.insert(name.to_owned(), schema);
    }
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://drillbook.dev/schema/runbook-v1.json",
        "title": "drillbook runbook (version 1)",
        "type": "object",
        "additionalProperties": false,
        "required": ["version", "name"],
        "properties": root_props,
        "definitions": definitions,
    })
}
