//! The OpenAPI document served at `/openapi.json`: it parses, is OpenAPI 3.0.3, lists every
//! route with its methods, and its references resolve (a dangling `$ref` breaks Postman imports).

use serde_json::Value;

fn doc() -> Value {
    serde_json::from_str(voxtrail_server::http::OPENAPI).expect("openapi.json is valid JSON")
}

/// Every route the server answers, with the methods the document must describe.
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/v2/reports_manager.php", &["get", "head"]),
    ("/api/v2/information.php", &["get", "head"]),
    ("/api/v2/interactions", &["post"]),
    ("/api/v2/voxtrail/chat_12/hours", &["get", "head"]),
    ("/api/v2/voxtrail/chat_12/feed", &["get", "head"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[test]
fn is_openapi_3_0_3() {
    let d = doc();
    assert_eq!(d["openapi"], "3.0.3");
    assert!(d["info"]["title"].is_string());
    assert!(d["info"]["version"].is_string());
}

#[test]
fn every_route_is_documented_with_its_methods() {
    let d = doc();
    let paths = d["paths"].as_object().expect("paths is an object");
    for (path, methods) in ROUTES {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is missing"));
        for m in *methods {
            let op = &item[*m];
            assert!(op.is_object(), "{m} {path} is missing");
            assert!(op["responses"].is_object(), "{m} {path} has no responses");
        }
        for m in METHODS {
            assert!(
                methods.contains(&m) || item.get(m).is_none(),
                "{path} documents {m}, which the server does not answer"
            );
        }
    }
    assert_eq!(
        paths.len(),
        ROUTES.len(),
        "unexpected paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
}

#[test]
fn report_documents_its_statuses_and_security() {
    let d = doc();
    let get = &d["paths"]["/api/v2/reports_manager.php"]["get"];
    for status in [
        "200", "400", "401", "403", "404", "405", "500", "503", "504",
    ] {
        assert!(
            get["responses"][status].is_object(),
            "report lacks {status}"
        );
    }
    assert_eq!(
        d["components"]["securitySchemes"]["wolkvoxToken"]["in"],
        "header"
    );
    assert_eq!(
        d["components"]["securitySchemes"]["wolkvoxToken"]["name"],
        "wolkvox-token"
    );
    let post = &d["paths"]["/api/v2/interactions"]["post"];
    for status in [
        "200", "400", "401", "403", "405", "408", "409", "413", "415", "500", "503",
    ] {
        assert!(
            post["responses"][status].is_object(),
            "ingestion lacks {status}"
        );
    }
    let content = &post["requestBody"]["content"];
    assert!(content["application/json"].is_object());
    assert!(content["application/x-ndjson"].is_object());
}

#[test]
fn chat12_row_has_the_wire_fields_in_wire_order() {
    let d = doc();
    let row = &d["components"]["schemas"]["Chat12Row"];
    let required: Vec<&str> = row["required"]
        .as_array()
        .expect("required is an array")
        .iter()
        .map(|v| v.as_str().expect("field names are strings"))
        .collect();
    assert_eq!(required, voxtrail_wire::CHAT_12_FIELDS);
    let props = row["properties"]
        .as_object()
        .expect("properties is an object");
    assert_eq!(props.len(), 11);
    for f in voxtrail_wire::CHAT_12_FIELDS {
        assert_eq!(props[f]["type"], "string", "{f} must be a string");
    }
}

/// Every `msg` string anywhere in the document (the error examples).
fn messages(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(s)) = m.get("msg") {
                out.push(s.clone());
            }
            m.values().for_each(|x| messages(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| messages(x, out)),
        _ => {}
    }
}

#[test]
fn the_hosted_api_texts_appear_byte_for_byte() {
    let mut found = Vec::new();
    messages(&doc(), &mut found);
    for text in [
        "THE API YOU WANT TO CONSULT DOES NOT EXIST",
        "SOME PARAMETERS ARE REQUIRED",
        "PLEASE ENTER THE WOLKVOX-TOKEN",
        "PLEASE VALIDATE TOKEN",
        "TOKEN LIMIT EXCEEDED",
        "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)",
        "THE API IS TEMPORARILY DISABLED FOR MAINTENANCE",
        "Validate dates entered",
    ] {
        assert!(
            found.iter().any(|m| m == text),
            "no example carries {text:?}"
        );
    }
}

#[test]
fn every_response_announces_x_request_id() {
    let d = doc();
    for (path, item) in d["paths"].as_object().expect("paths is an object") {
        for (method, op) in item.as_object().expect("path items are objects") {
            for (status, resp) in op["responses"].as_object().expect("responses is an object") {
                assert!(
                    resp["headers"]["X-Request-Id"].is_object(),
                    "{method} {path} {status} does not mention X-Request-Id"
                );
            }
        }
    }
}

#[test]
fn every_reference_resolves() {
    fn walk(v: &Value, root: &Value, seen: &mut usize) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let pointer = r
                        .strip_prefix('#')
                        .unwrap_or_else(|| panic!("external $ref {r}"));
                    assert!(root.pointer(pointer).is_some(), "dangling $ref {r}");
                    *seen += 1;
                }
                m.values().for_each(|x| walk(x, root, seen));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, root, seen)),
            _ => {}
        }
    }
    let d = doc();
    let mut seen = 0;
    walk(&d, &d, &mut seen);
    assert!(seen > 0);
}
