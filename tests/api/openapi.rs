//! The committed OpenAPI document matches the one generated from the handlers.

const COMMITTED: &str = "openapi/openapi.json";

#[test]
fn committed_openapi_matches_generated() {
    let generated = workforce_service::http::openapi()
        .to_pretty_json()
        .expect("the document serializes")
        + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write the OpenAPI document");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{COMMITTED} is out of date with the handlers; regenerate it with \
         `cargo run --quiet -- openapi > {COMMITTED}` (or run this test with UPDATE_OPENAPI=1) and commit it"
    );
}

#[test]
fn every_operation_is_documented() {
    let document = serde_json::to_value(workforce_service::http::openapi()).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = format!("{method} {path}");
            assert!(
                operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{id} has no summary"
            );
            assert!(
                operation["operationId"].is_string(),
                "{id} has no operation id"
            );
            assert!(
                operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{id} has no tag"
            );
            for (status, response) in operation["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{id} {status} has no description"
                );
                // A failed readiness check returns its own JSON report.
                if (status.starts_with('4') || status.starts_with('5')) && path != "/readyz" {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{id} {status} is not problem+json"
                    );
                }
            }
        }
    }
}
