//! A first end-to-end check: the real binary serves a stored row, byte for byte.

mod common;

use common::*;

#[tokio::test]
async fn a_stored_row_is_served_byte_exact() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    env.import_ndjson("acme", &record("c-1", "2026-10-01 08:15:00"));
    let server = env.serve(None);
    let resp = client()
        .get(server.report_url("20261001000000", "20261001235959"))
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.text().await.unwrap();
    assert_eq!(
        body,
        r#"{"code":"200","error":null,"msg":"1 records were found","data":[{"conn_id":"c-1","agent_id":"7","agent_name":"Ana","channel":"email","from":"ana@cc.co","to":"client@x.co","subject":"Hola","body":"Texto","date":"2026-10-01 08:15:00","cod_act":"1","description_cod_act":"Venta"}]}"#
    );
}
