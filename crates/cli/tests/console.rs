//! End-to-end tests of the web console through the real binary and real HTTP: the console
//! scope, sign-in and sessions, the same-origin check, security headers, and what each page
//! shows (counts equal to the report's, keyset pages, word search, hostile content escaped).

mod common;

use std::time::Duration;

use common::{Env, Server, eventually, json, record};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// A client that never follows redirects (so 303s are seen) and keeps no cookies.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Signs in; returns the `Cookie` header value.
async fn sign_in(srv: &Server, token: &str) -> String {
    let res = raw_client()
        .post(srv.url("/console/login"))
        .header("origin", format!("http://{}", srv.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        res.text().await
    );
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    set.split(';').next().unwrap().to_owned()
}

async fn get(srv: &Server, cookie: &str, path: &str) -> (StatusCode, HeaderMap, String) {
    let res = raw_client()
        .get(srv.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.unwrap())
}

fn setup() -> (Env, String) {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let console = env.token("acme", "console", None);
    (env, console)
}

#[tokio::test]
async fn console_tokens_sign_in_and_only_they_do() {
    let (env, console) = setup();
    let report = env.token("acme", "report", None);
    let ingest = env.token("acme", "ingest", None);
    let srv = env.serve(None);
    let c = raw_client();

    // A console token reads no /api/v2/ endpoint: 403 PLEASE VALIDATE TOKEN, as a wrong scope.
    let res = c
        .get(srv.report_url("20261001000000", "20261001235959"))
        .header("wolkvox-token", &console)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        json(&res.bytes().await.unwrap())["msg"],
        "PLEASE VALIDATE TOKEN"
    );

    // Report and ingest tokens, and nonsense, cannot sign in.
    for bad in [
        report.as_str(),
        ingest.as_str(),
        "vxt_nope",
        "%00%ff'\"<script>",
        "",
    ] {
        let res = c
            .post(srv.url("/console/login"))
            .header("origin", format!("http://{}", srv.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={bad}"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{bad}: {}", res.status());
        assert!(res.headers().get("set-cookie").is_none());
        let page = res.text().await.unwrap();
        assert!(!page.contains("<script>"), "input is escaped");
    }

    // Cross-site or origin-less POSTs are refused even with a good token.
    for origin in [Some("http://evil.test"), Some("null"), None] {
        let mut req = c
            .post(srv.url("/console/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={console}"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{origin:?}");
        assert!(res.headers().get("set-cookie").is_none());
    }

    // The good case: a session cookie with every attribute.
    let res = c
        .post(srv.url("/console/login"))
        .header("origin", format!("http://{}", srv.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={console}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/console/");
    let set = res.headers()["set-cookie"].to_str().unwrap();
    for part in [
        "vxt_console=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(!set.contains(&console), "the cookie is not the token");

    // Behind a TLS proxy the cookie is Secure.
    let res = c
        .post(srv.url("/console/login"))
        .header("origin", format!("https://{}", srv.addr))
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={console}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );

    // The token never appears in the log.
    assert!(!srv.logs().contains(&console));
}

#[tokio::test]
async fn without_a_session_every_console_url_redirects_to_login() {
    let (env, console) = setup();
    let srv = env.serve(None);
    let forged = format!("vxt_console={}", "ab".repeat(32));
    for cookie in ["", "vxt_console=garbage", forged.as_str()] {
        for path in [
            "/console/",
            "/console",
            "/console/interactions?q=x",
            "/console/interactions/c-1",
            "/console/tokens",
            "/console/nothing/here",
        ] {
            let (status, headers, _) = get(&srv, cookie, path).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{path} with {cookie:?}");
            assert_eq!(headers["location"], "/console/login");
            assert!(headers.contains_key("content-security-policy"));
        }
    }
    // The login page itself answers, with the security headers, and asks for the token in a
    // POST form.
    let (status, headers, page) = get(&srv, "", "/console/login").await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(page.contains(r#"method="post""#) && page.contains(r#"type="password""#));
    assert!(page.len() < 100_000);
    // A session works until sign-out.
    let cookie = sign_in(&srv, &console).await;
    for path in [
        "/console/",
        "/console/interactions",
        "/console/tokens",
        "/console/static/console.css",
    ] {
        let (status, headers, page) = get(&srv, &cookie, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(
            page.len() < 100_000,
            "{path} is {} bytes without data rows",
            page.len()
        );
    }
    let (status, _, _) = get(&srv, &cookie, "/console/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Sign-out needs the same-origin check too.
    let res = raw_client()
        .post(srv.url("/console/logout"))
        .header("cookie", &cookie)
        .header("origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = raw_client()
        .post(srv.url("/console/logout"))
        .header("cookie", &cookie)
        .header("referer", format!("http://{}/console/", srv.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, _) = get(&srv, &cookie, "/console/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions_within_five_seconds() {
    let (env, _) = setup();
    let (console, id) = env.token_with_id("acme", "console", None, None);
    let srv = env.serve(None);
    let cookie = sign_in(&srv, &console).await;
    assert_eq!(
        get(&srv, &cookie, "/console/tokens").await.0,
        StatusCode::OK
    );
    env.ok(&["token", "revoke", &id.to_string()]);
    let ended = eventually(Duration::from_secs(5), async || {
        get(&srv, &cookie, "/console/tokens").await.0 == StatusCode::SEE_OTHER
    })
    .await;
    assert!(ended, "the session outlived its token");
}

/// Rows in the operation's wall clock, with agents and codes of our choosing.
fn row(conn_id: &str, date: &str, agent: &str, code: &str, subject: &str, body: &str) -> String {
    serde_json::json!({
        "conn_id": conn_id, "agent_id": agent, "agent_name": format!("Agent {agent}"),
        "from": "agent@cc.co", "to": format!("client-{conn_id}@x.co"), "subject": subject,
        "body": body, "date": date, "cod_act": code, "description_cod_act": format!("Code {code}"),
    })
    .to_string()
}

#[tokio::test]
async fn overview_counts_equal_the_report() {
    let (env, console) = setup();
    let report = env.token("acme", "report", None);
    env.seed("acme", 3000, "20261010235959", 20);
    let srv = env.serve(None);
    let cookie = sign_in(&srv, &console).await;
    for (from, to) in [
        ("2026-10-01", "2026-10-07"),
        ("2026-10-09", "2026-10-10"),
        ("2026-09-01", "2026-09-30"),
    ] {
        let (status, _, page) = get(&srv, &cookie, &format!("/console/?from={from}&to={to}")).await;
        assert_eq!(status, StatusCode::OK);
        let total: u64 = between(&page, r#"id="total">"#, "<").parse().unwrap();
        let ini = format!("{}000000", from.replace('-', ""));
        let end = format!("{}235959", to.replace('-', ""));
        let res = common::client()
            .get(srv.report_url(&ini, &end))
            .header("wolkvox-token", &report)
            .send()
            .await
            .unwrap();
        let body = json(&res.bytes().await.unwrap());
        let rows = body["data"].as_array().unwrap();
        assert_eq!(total, rows.len() as u64, "{from}..{to}");
        // Per-agent counts add up to the report's rows of each agent.
        let agents = between(&page, r#"id="agents""#, "</table>");
        for cell in agents.split("<tr>").skip(2) {
            let id = between(cell, "<bdi>", "</bdi>");
            let n: usize = between(cell, r#"class="n">"#, "<").parse().unwrap();
            let want = rows.iter().filter(|r| r["agent_id"] == id).count();
            assert_eq!(n, want, "agent {id}");
        }
        // The chart has a bar per day, or per hour for two days.
        let bars = page.matches("<rect").count();
        let days = if from == "2026-10-09" {
            48
        } else if from == "2026-10-01" {
            7
        } else {
            30
        };
        assert_eq!(bars, days, "{from}..{to}");
    }
    // Hostile or impossible ranges are a 400 page, not an error 500.
    for q in [
        "from=2026-13-01",
        "from=2026-10-10&to=2026-10-01",
        "from=2026-01-01&to=2026-10-01",
        "from=%00%ff",
    ] {
        let (status, _, page) = get(&srv, &cookie, &format!("/console/?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {page}");
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let from = s
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in page"))
        + start.len();
    let len = s[from..].find(end).unwrap();
    &s[from..from + len]
}

#[tokio::test]
async fn interactions_pages_stay_right_while_rows_arrive_and_search_finds_words() {
    let (env, console) = setup();
    let ingest = env.token("acme", "ingest", None);
    let mut lines = Vec::new();
    for i in 0..120 {
        let subject = if i % 10 == 0 {
            "Factura pendiente"
        } else {
            "Saludo"
        };
        let body = if i % 15 == 0 {
            "Su envío llegó"
        } else {
            "Gracias"
        };
        let agent = if i % 2 == 0 { "7" } else { "8" };
        let date = format!("2026-10-05 {:02}:{:02}:00", 8 + i / 60, i % 60);
        lines.push(row(&format!("c-{i:03}"), &date, agent, "1", subject, body));
    }
    env.import_ndjson("acme", &lines.join("\n"));
    env.operation("other", "America/Bogota");
    env.import_ndjson(
        "other",
        &row("secret-1", "2026-10-05 09:00:00", "9", "1", "Other op", "x"),
    );
    let srv = env.serve(None);
    let cookie = sign_in(&srv, &console).await;
    let range = "from=2026-10-05&to=2026-10-05";

    let (status, _, page1) = get(&srv, &cookie, &format!("/console/interactions?{range}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page1.matches("/console/interactions/c-").count(), 50);
    assert!(page1.contains("c-119"), "newest first");
    let next = between(&page1, r#"href="/console/interactions?"#, "\"").replace("&amp;", "&");
    let next = format!("/console/interactions?{next}");
    assert!(next.contains("before="), "{next}");

    // New rows arrive, some newer than everything, one older than the cursor.
    let late = [
        row("late-new", "2026-10-05 11:00:00", "7", "1", "Nuevo", "x"),
        row("late-old", "2026-10-05 08:00:30", "7", "1", "Viejo", "x"),
    ];
    let res = common::client()
        .post(srv.url("/api/v2/interactions"))
        .header("wolkvox-token", &ingest)
        .header("content-type", "application/x-ndjson")
        .body(late.join("\n"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{:?}", res.text().await);

    let (_, _, page2) = get(&srv, &cookie, &next).await;
    let ids: Vec<&str> = page2
        .split("/console/interactions/")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    let want: Vec<String> = (20..70).rev().map(|i| format!("c-{i:03}")).collect();
    assert_eq!(ids, want, "page 2 continues exactly after page 1");
    assert!(!page2.contains("late-new"));

    // Word search: whole words in subject or body, any case; the other operation never shows.
    let (_, _, found) = get(
        &srv,
        &cookie,
        &format!("/console/interactions?{range}&q=FACTURA"),
    )
    .await;
    assert_eq!(found.matches("/console/interactions/c-").count(), 12);
    let (_, _, found) = get(
        &srv,
        &cookie,
        &format!("/console/interactions?{range}&q=env%C3%ADo+lleg%C3%B3"),
    )
    .await;
    assert_eq!(found.matches("/console/interactions/c-").count(), 8);
    let (_, _, found) = get(
        &srv,
        &cookie,
        &format!("/console/interactions?{range}&q=Other"),
    )
    .await;
    assert!(found.contains(r#"id="empty""#));
    // Agent and recipient filters.
    let (_, _, found) = get(
        &srv,
        &cookie,
        &format!("/console/interactions?{range}&agent=8&q=factura"),
    )
    .await;
    assert_eq!(found.matches("/console/interactions/c-").count(), 0);
    let (_, _, found) = get(
        &srv,
        &cookie,
        &format!("/console/interactions?{range}&recipient=CLIENT-c-011"),
    )
    .await;
    assert_eq!(found.matches("/console/interactions/c-").count(), 1);
    // Search syntax and broken cursors are inert.
    for q in [
        "q=%22%29%28*+OR+NEAR%28",
        "q=%00",
        "before=abc",
        "before=1-2-3",
        "q=a%22b&before=20261005090000-1",
    ] {
        let (status, _, _) =
            get(&srv, &cookie, &format!("/console/interactions?{range}&{q}")).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{q}: {status}"
        );
    }
    // One interaction: another operation's conn_id is 404.
    let (status, _, page) = get(&srv, &cookie, "/console/interactions/c-010").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Factura pendiente") && page.contains("client-c-010@x.co"));
    let (status, _, _) = get(&srv, &cookie, "/console/interactions/secret-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The word-search watermark of the test's database (rows up to it are in the FTS5 index).
fn indexed_upto(env: &Env) -> i64 {
    match voxtrail_server::store::Store::open(&env.db_url).unwrap() {
        voxtrail_server::store::Store::Sqlite(s) => s.search_indexed_upto().unwrap(),
        _ => unreachable!("the tests' database is SQLite"),
    }
}

#[tokio::test]
async fn word_search_finds_rows_before_and_after_the_indexer_and_a_restart_resumes() {
    let (env, console) = setup();
    let ingest = env.token("acme", "ingest", None);
    let factura = |i: u32| {
        row(
            &format!("f-{i}"),
            "2026-10-05 09:00:00",
            "7",
            "1",
            "Factura",
            "x",
        )
    };
    // `voxtrail import` does not index; the server's indexer catches up when it starts.
    env.import_ndjson("acme", &[factura(1), factura(2), factura(3)].join("\n"));
    assert_eq!(indexed_upto(&env), 0);
    let srv = env.serve(Some("search_index_interval_ms = 86400000\n"));
    assert!(
        common::eventually(Duration::from_secs(30), async || indexed_upto(&env) == 3).await,
        "the indexer caught up at start"
    );
    let cookie = sign_in(&srv, &console).await;
    let search = "/console/interactions?from=2026-10-05&to=2026-10-05&q=factura";
    // Rows ingested now wait a day for the indexer, yet are found at once.
    let res = common::client()
        .post(srv.url("/api/v2/interactions"))
        .header("wolkvox-token", &ingest)
        .header("content-type", "application/x-ndjson")
        .body([factura(4), factura(5)].join("\n"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{:?}", res.text().await);
    let (_, _, found) = get(&srv, &cookie, search).await;
    assert_eq!(
        found.matches("/console/interactions/f-").count(),
        5,
        "{found}"
    );
    assert_eq!(indexed_upto(&env), 3, "the new rows are not indexed yet");
    srv.terminate();

    // A restart resumes from the watermark.
    let srv = env.serve(Some("search_index_interval_ms = 50\n"));
    assert!(
        common::eventually(Duration::from_secs(30), async || indexed_upto(&env) == 5).await,
        "the indexer resumed"
    );
    let cookie = sign_in(&srv, &console).await;
    let (_, _, found) = get(&srv, &cookie, search).await;
    assert_eq!(
        found.matches("/console/interactions/f-").count(),
        5,
        "{found}"
    );
    let (_, _, found) = get(&srv, &cookie, &search.replace("factura", "factur")).await;
    assert_eq!(
        found.matches("/console/interactions/f-").count(),
        0,
        "whole words"
    );
}

#[tokio::test]
async fn hostile_content_is_escaped_and_html_bodies_are_sanitised() {
    let (env, console) = setup();
    let html_body = r#"<p onclick="x()">Hola</p><script>document.title='owned'</script><img src="http://127.0.0.1:9/p.gif" onerror="alert(1)"><a href="javascript:alert(1)">x</a><style>body{display:none}</style>"#;
    let text_body = "line <script>alert(1) & 2 < 3\u{202E}gnp.exe";
    env.import_ndjson(
        "acme",
        &[
            row(
                "h-1",
                "2026-10-05 09:00:00",
                "<b>7</b>",
                "1",
                "<script>alert(1)</script>",
                html_body,
            ),
            row(
                "h-2",
                "2026-10-05 09:01:00",
                "7",
                "1",
                "\"><img src=x onerror=alert(1)>",
                text_body,
            ),
        ]
        .join("\n"),
    );
    let srv = env.serve(None);
    let cookie = sign_in(&srv, &console).await;
    let (_, _, list) = get(
        &srv,
        &cookie,
        "/console/interactions?from=2026-10-05&to=2026-10-05",
    )
    .await;
    assert!(!list.contains("<script>alert") && list.contains("&lt;script&gt;"));
    assert!(!list.contains("<img src=x"));
    let (_, _, overview) = get(&srv, &cookie, "/console/?from=2026-10-05&to=2026-10-05").await;
    assert!(!overview.contains("<b>7</b>") && overview.contains("&lt;b&gt;7&lt;/b&gt;"));

    let (_, _, page) = get(&srv, &cookie, "/console/interactions/h-1").await;
    let frame = between(&page, "<iframe", "</iframe>");
    assert!(frame.contains(r#"sandbox="""#), "{frame}");
    assert!(!frame.contains("allow-scripts") && !frame.contains("allow-same-origin"));
    let srcdoc = between(frame, "srcdoc=\"", "\"");
    for bad in [
        "script",
        "onclick",
        "onerror",
        "javascript:",
        "127.0.0.1",
        "style",
    ] {
        assert!(!srcdoc.contains(bad), "{bad} in {srcdoc}");
    }
    assert!(srcdoc.contains("Hola"));
    let (_, _, page) = get(&srv, &cookie, "/console/interactions/h-2").await;
    assert!(!page.contains("<script>alert") && page.contains("line &lt;script&gt;"));
    assert!(!page.contains("<iframe"), "a text body is text");
}

#[tokio::test]
async fn consumers_page_lists_tokens_without_secrets() {
    let (env, console) = setup();
    let (report, report_id) = env.token_with_id("acme", "report", Some(5), Some("BI <extractor>"));
    env.import_ndjson("acme", &record("c-1", "2026-10-05 09:00:00"));
    let srv = env.serve(None);
    let res = common::client()
        .get(srv.report_url("20261005000000", "20261005235959"))
        .header("wolkvox-token", &report)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = sign_in(&srv, &console).await;
    let ok = eventually(Duration::from_secs(10), async || {
        let (_, _, page) = get(&srv, &cookie, "/console/tokens").await;
        page.contains("BI &lt;extractor&gt;") && {
            let row = between(&page, "BI &lt;extractor&gt;", "</tr>");
            row.contains(r#"<td class="n">1</td><td class="n">5</td>"#)
        }
    })
    .await;
    let (_, _, page) = get(&srv, &cookie, "/console/tokens").await;
    assert!(ok, "today's use and limit shown: {page}");
    assert!(!page.contains(&report) && !page.contains(&console));

    // The latest requests of each token are the audit's, newest first.
    for (ini, end) in [
        ("20261005000000", "20261005235959"),
        ("20261006000000", "20261006235959"),
    ] {
        let res = common::client()
            .get(srv.report_url(ini, end))
            .header("wolkvox-token", &report)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let store = voxtrail_server::store::Store::open(&env.db_url).unwrap();
    let audited = |store: &voxtrail_server::store::Store| {
        store
            .list_audit(&voxtrail_server::store::audit::AuditFilter {
                token_id: Some(report_id),
                ..Default::default()
            })
            .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(10), async || audited(&store).len() == 3).await,
        "three requests audited"
    );
    let (_, _, page) = get(&srv, &cookie, "/console/tokens").await;
    let table = between(
        &page,
        &format!(r#"<table class="requests" data-token="{report_id}">"#),
        "</table>",
    );
    let shown: Vec<&str> = table.split("<tr>").skip(2).collect();
    let mut records = audited(&store);
    records.reverse();
    assert_eq!(shown.len(), records.len(), "{table}");
    for (row, r) in shown.iter().zip(&records) {
        assert!(row.starts_with(&format!("<td>{}</td>", r.at)), "{row}");
        assert!(row.contains(&format!(
            "{}–{}",
            r.date_ini.as_deref().unwrap(),
            r.date_end.as_deref().unwrap()
        )));
        assert!(row.contains(&format!(
            r#"<td class="n">{}</td><td class="n">{}</td>"#,
            r.status, r.rows
        )));
    }
    assert!(shown[0].contains("20261006000000"), "newest first: {table}");
    assert!(
        shown[2].contains(r#"<td class="n">1</td>"#),
        "the first answered one row"
    );
    assert!(
        page.contains("No request recorded."),
        "the console token has none: {page}"
    );
    assert!(!page.contains(r#"id="mirror""#), "not a mirror");
}

#[tokio::test]
async fn consumers_page_shows_the_mirror_status() {
    // The upstream: another voxtrail with 30 rows.
    let up = Env::new();
    up.operation("up", "America/Bogota");
    let up_token = up.token("up", "report", None);
    let lines: Vec<String> = (0..30)
        .map(|i| {
            row(
                &format!("m-{i}"),
                &format!("2026-10-0{} 0{}:00:00", 1 + i % 5, i % 10),
                "7",
                "1",
                "s",
                "b",
            )
        })
        .collect();
    up.import_ndjson("up", &lines.join("\n"));
    let upstream = up.serve(None);

    let (env, console) = setup();
    let out = env
        .cmd()
        .args([
            "mirror",
            "set",
            "--operation",
            "acme",
            "--url",
            &upstream.url(""),
            "--timezone",
            "America/Bogota",
            "--since",
            "20261001000000",
            "--window",
            "31d",
        ])
        .env("VOXTRAIL_UPSTREAM_TOKEN", &up_token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srv = env.serve(None);
    let cookie = sign_in(&srv, &console).await;
    let store = voxtrail_server::store::Store::open(&env.db_url).unwrap();
    let mirror = |store: &voxtrail_server::store::Store| store.mirrors().unwrap().remove(0);
    assert!(
        eventually(Duration::from_secs(30), async || mirror(&store)
            .rows_inserted
            == 30)
        .await,
        "the mirror copied the upstream: {:?}",
        mirror(&store)
    );
    let (status, _, page) = get(&srv, &cookie, "/console/tokens").await;
    let m = mirror(&store);
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(&up_token), "never the upstream token");
    assert_eq!(between(&page, r#"id="mirror-state">"#, "<"), "running");
    assert_eq!(
        between(&page, r#"id="mirror-rows">"#, "<"),
        format!("{} / {}", m.rows_inserted, m.rows_updated)
    );
    let checkpoint = between(&page, r#"id="mirror-checkpoint">"#, "<");
    assert!(checkpoint.starts_with("2026-"), "{checkpoint}");
    let success = between(&page, r#"id="mirror-success">"#, "<");
    assert!(success.ends_with('Z'), "{success}");
    let errors: u64 = between(&page, r#"id="mirror-errors">"#, "<")
        .parse()
        .unwrap();
    assert!(errors <= mirror(&store).errors);
    // The mirrored rows are in the overview.
    let (_, _, overview) = get(&srv, &cookie, "/console/?from=2026-10-01&to=2026-10-07").await;
    assert_eq!(between(&overview, r#"id="total">"#, "<"), "30");
}

/// The overview's counting watermark of the test's database.
fn counted_upto(env: &Env) -> i64 {
    match voxtrail_server::store::Store::open(&env.db_url).unwrap() {
        voxtrail_server::store::Store::Sqlite(s) => s.counted_upto().unwrap(),
        _ => unreachable!("the tests' database is SQLite"),
    }
}

#[tokio::test]
async fn overview_is_exact_while_the_indexer_is_behind() {
    let (env, console) = setup();
    let report = env.token("acme", "report", None);
    let ingest = env.token("acme", "ingest", None);
    env.seed("acme", 500, "20261010235959", 10);
    assert_eq!(counted_upto(&env), 0, "seed does not count");
    // The indexer's first batch runs at start, then not for a day.
    let srv = env.serve(Some("search_index_interval_ms = 86400000\n"));
    assert!(
        common::eventually(Duration::from_secs(30), async || counted_upto(&env) == 500).await,
        "counted at start"
    );
    let lines: Vec<String> = (0..40)
        .map(|i| {
            row(
                &format!("late-{i}"),
                &format!("2026-10-0{} 1{}:30:00", 3 + i % 5, i % 10),
                if i % 3 == 0 { "new-agent" } else { "7" },
                "Z9",
                "s",
                "b",
            )
        })
        .collect();
    let res = common::client()
        .post(srv.url("/api/v2/interactions"))
        .header("wolkvox-token", &ingest)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{:?}", res.text().await);
    assert_eq!(counted_upto(&env), 500, "the new rows are not counted yet");
    let cookie = sign_in(&srv, &console).await;
    for (from, to) in [("2026-10-01", "2026-10-10"), ("2026-10-05", "2026-10-06")] {
        let (_, _, page) = get(&srv, &cookie, &format!("/console/?from={from}&to={to}")).await;
        let total: u64 = between(&page, r#"id="total">"#, "<").parse().unwrap();
        let res = common::client()
            .get(srv.report_url(
                &format!("{}000000", from.replace('-', "")),
                &format!("{}235959", to.replace('-', "")),
            ))
            .header("wolkvox-token", &report)
            .send()
            .await
            .unwrap();
        let body = json(&res.bytes().await.unwrap());
        let rows = body["data"].as_array().unwrap();
        assert_eq!(total, rows.len() as u64, "{from}..{to}");
        let codes = between(&page, r#"id="codes""#, "</table>");
        for cell in codes.split("<tr>").skip(2) {
            let code = between(cell, "<bdi>", "</bdi>");
            let n: usize = between(cell, r#"class="n">"#, "<").parse().unwrap();
            let want = rows.iter().filter(|r| r["cod_act"] == code).count();
            assert_eq!(n, want, "code {code}, {from}..{to}");
        }
        assert!(codes.contains("Z9"), "the uncounted rows are in: {codes}");
    }
}

#[tokio::test]
async fn demo_prints_a_console_token_and_url_that_work() {
    let env = Env::new();
    let mut cmd = env.cmd();
    cmd.args([
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--rows",
        "500",
        "--database",
        &env.db_url,
    ]);
    let (srv, lines) = common::spawn_with_stdout(&mut cmd);
    let (mut token, mut url) = (None, None);
    while url.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("demo output");
        if let Some(t) = line.strip_prefix("console token: ") {
            token = Some(t.trim().to_owned());
        }
        if line.starts_with("open the console at ") {
            url = line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .map(str::to_owned);
        }
    }
    let url = url.unwrap();
    assert_eq!(url, format!("http://{}/console/", srv.addr));
    let cookie = sign_in(&srv, &token.expect("console token line")).await;
    let (status, _, page) = get(&srv, &cookie, "/console/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"id="total""#));
}
