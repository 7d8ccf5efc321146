//! The JSON Schema files in `docs/events/` and a small validator for the part of JSON Schema
//! (2020-12) they use: `type`, `const`, `enum`, `required`, `properties`, `items`,
//! `minLength`, `minimum`, `pattern`. A schema with any other keyword fails loudly, so a file
//! can never use something this checker would silently ignore.

use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// The folder holding one schema per event type (`{type}.json`).
pub fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/events")
}

/// Every schema, by event type.
pub fn load_all() -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(schema_dir()).expect("docs/events exists") {
        let path = entry.expect("dir entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(t) = name.strip_suffix(".json") {
            let text = std::fs::read_to_string(&path).expect("read schema");
            let schema: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            out.insert(t.to_string(), schema);
        }
    }
    out
}

/// Validates an event envelope against its type's schema; every problem, as paths.
pub fn validate_event(schemas: &HashMap<String, Value>, event: &Value) -> Result<(), Vec<String>> {
    let Some(t) = event.get("type").and_then(Value::as_str) else {
        return Err(vec!["$.type: missing".into()]);
    };
    let Some(schema) = schemas.get(t) else {
        return Err(vec![format!("no schema docs/events/{t}.json")]);
    };
    let mut errors = Vec::new();
    check(schema, event, "$", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

const ANNOTATIONS: [&str; 4] = ["$schema", "$id", "title", "description"];

fn check(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let obj = schema.as_object().expect("a schema is an object");
    for (kw, arg) in obj {
        match kw.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "type" => {
                let allowed: Vec<&str> = match arg {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => panic!("bad `type` in schema at {path}"),
                };
                if !allowed.iter().any(|t| type_matches(t, v)) {
                    errors.push(format!("{path}: expected {allowed:?}, got {v}"));
                }
            }
            "const" => {
                if v != arg {
                    errors.push(format!("{path}: expected {arg}, got {v}"));
                }
            }
            "enum" => {
                if !arg.as_array().expect("enum is an array").contains(v) {
                    errors.push(format!("{path}: {v} not in {arg}"));
                }
            }
            "required" => {
                for name in arg.as_array().expect("required is an array") {
                    let name = name.as_str().expect("required names are strings");
                    if v.get(name).is_none() {
                        errors.push(format!("{path}.{name}: required"));
                    }
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (name, sub) in arg.as_object().expect("properties is an object") {
                        if let Some(pv) = o.get(name) {
                            check(sub, pv, &format!("{path}.{name}"), errors);
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    for (i, item) in a.iter().enumerate() {
                        check(arg, item, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            "minLength" => {
                let min = arg.as_u64().expect("minLength is a number") as usize;
                if v.as_str().is_some_and(|s| s.chars().count() < min) {
                    errors.push(format!("{path}: shorter than {min}"));
                }
            }
            "minimum" => {
                let min = arg.as_f64().expect("minimum is a number");
                if v.as_f64().is_some_and(|n| n < min) {
                    errors.push(format!("{path}: {v} below {min}"));
                }
            }
            "pattern" => {
                let re = regex::Regex::new(arg.as_str().expect("pattern is a string"))
                    .expect("pattern compiles");
                if v.as_str().is_some_and(|s| !re.is_match(s)) {
                    errors.push(format!("{path}: {v} does not match {arg}"));
                }
            }
            other => panic!("schema keyword `{other}` at {path} is not supported by this checker"),
        }
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unknown JSON type `{other}`"),
    }
}

/// Every event an org has (the catch-up feed) validates against its schema.
pub async fn assert_org_events_valid(w: &crate::env::World, org: &crate::env::TestOrg) {
    let schemas = load_all();
    // The feed shows numbered events only: wait until the relay has numbered every committed
    // one (it runs beside the test).
    crate::env::eventually(std::time::Duration::from_secs(10), || async {
        let (unnumbered,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE org_id = $1 AND seq IS NULL")
                .bind(&org.id)
                .fetch_one(&w.db.pool)
                .await
                .ok()?;
        (unnumbered == 0).then_some(())
    })
    .await;
    let events = w
        .get_json(org, "/api/v1/events?after_seq=0&limit=1000")
        .await;
    let events = events.as_array().expect("a list of events");
    assert!(!events.is_empty(), "the org has events");
    for e in events {
        if let Err(errors) = validate_event(&schemas, e) {
            panic!("event does not match docs/events schema: {errors:?}\n{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_load_and_reject_bad_events() {
        let schemas = load_all();
        // docs/events.md's table of types names exactly the types that have a schema.
        let doc = std::fs::read_to_string(schema_dir().join("../events.md")).expect("events.md");
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `dartwing."))
            .filter_map(|rest| rest.split('`').next())
            .map(|t| format!("dartwing.{t}"))
            .collect();
        let with_schema: std::collections::BTreeSet<String> = schemas.keys().cloned().collect();
        assert_eq!(
            with_schema, documented,
            "one schema per documented event type"
        );
        let good = json!({
            "specversion": "1.0", "id": "e", "source": "/dartwing/gateway",
            "type": "dartwing.contact.opted_in.v1", "time": "2026-11-25T19:00:00.000Z",
            "subject": "conversations/c", "datacontenttype": "application/json",
            "dataschema": "https://dartwing.dev/schemas/events/dartwing.contact.opted_in.v1.json",
            "dartwingorgid": "o", "dartwingseq": 1, "partitionkey": "c",
            "data": {"channel": "sms", "address": "+1555", "conversation_id": "c"},
        });
        validate_event(&schemas, &good).unwrap();
        let mut bad = good.clone();
        bad["data"]["channel"] = json!("pigeon");
        bad["time"] = json!("yesterday");
        bad["data"].as_object_mut().unwrap().remove("address");
        let errors = validate_event(&schemas, &bad).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }
}
