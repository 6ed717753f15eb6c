//! End-to-end: `voxtrail serve` configured from the environment as docs/api.md shows
//! ("Configuration"): a text setting takes a bare or a quoted value, and a bad value stops the
//! server with a message that names the variable and the expected form.

mod common;

use common::*;

#[tokio::test]
async fn the_documented_empty_window_forms_both_start_a_404_server() {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let token = env.token("acme", "report", None);
    for value in ["\"404\"", "404"] {
        let server = Server::spawn(
            env.cmd()
                .args(["serve", "--listen", "127.0.0.1:0"])
                .env("VOXTRAIL_COMPAT__EMPTY_WINDOW", value),
        );
        let resp = plain_client()
            .get(server.report_url("20261001000000", "20261001235959"))
            .header("wolkvox-token", &token)
            .send()
            .await
            .expect("sending request");
        assert_eq!(resp.status().as_u16(), 404, "{value}");
        assert_eq!(
            resp.text().await.unwrap(),
            error_json(404, "NOT FOUND", "Validate dates entered"),
            "{value}"
        );
    }
}

#[test]
fn a_bad_value_stops_serve_with_a_clear_message() {
    let env = Env::new();
    for (name, value, expected) in [
        ("VOXTRAIL_COMPAT__EMPTY_WINDOW", "500", "bare or quoted"),
        ("VOXTRAIL_LIMITS__MAX_RECORDS", "lots", "a whole number"),
    ] {
        let out = env
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(name, value)
            .output()
            .expect("running voxtrail");
        assert!(!out.status.success(), "{name}={value} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{name}=\"{value}\"")), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
