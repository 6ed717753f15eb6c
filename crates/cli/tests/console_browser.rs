//! The console in a real browser: Debian's chromium, driven through chromedriver's WebDriver
//! protocol (a few JSON calls over HTTP, below), against the real `voxtrail serve`. Signs in,
//! opens every page, uses the keyboard, narrows the window to 375 px, and checks that hostile
//! e-mail content is inert in the live page: no script ran, and nothing was requested from
//! another origin (remote URLs point at a second local listener that must receive nothing).
//! Screenshots of each page go to `target/console-screenshots/`.
//!
//! Without chromium or chromedriver the test prints why and passes, except with `CI=true`,
//! where it fails.

mod common;

use std::io::Read as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use common::{Env, eventually};
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free local port, killed when dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Browser {
    http: reqwest::Client,
    url: String,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("webdriver call");
        let v: Value = res.json().await.expect("webdriver json");
        assert!(
            v["value"].get("error").is_none(),
            "webdriver {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Presses one key (a WebDriver key code such as `\u{E004}` for Tab).
    async fn press(&self, key: &str) {
        self.call(
            reqwest::Method::POST,
            "/actions",
            Some(
                json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": [
                { "type": "keyDown", "value": key }, { "type": "keyUp", "value": key } ] }] }),
            ),
        )
        .await;
    }

    async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn screenshot(&self, name: &str) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("screenshot decodes");
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// No hostile script ran in this page.
    async fn assert_no_script_ran(&self) {
        let v = self
            .eval("return [document.title, typeof window.pwned, document.body !== null];")
            .await;
        assert!(
            !v[0].as_str().unwrap_or("").contains("owned"),
            "a script changed the title: {v}"
        );
        assert_eq!(v[1], "undefined", "a script set a global: {v}");
    }
}

/// A listener standing for every remote site: counts the connections it receives.
fn remote_site() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for mut conn in l.incoming().map_while(Result::ok) {
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = conn.read(&mut buf);
        }
    });
    (addr, hits)
}

/// A 2×3 PNG (red), base64.
const PNG_2X3: &str = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAADCAIAAAA2iEnWAAAAEElEQVR4nGP4z8AARAwoFABE0AX7pM/egAAAAABJRU5ErkJggg==";

fn row(conn_id: &str, date: &str, subject: &str, body: &str) -> String {
    json!({
        "conn_id": conn_id, "agent_id": "7", "agent_name": "Ana \u{202E}evil", "from": "ana@cc.co",
        "to": "client@x.co", "subject": subject, "body": body, "date": date, "cod_act": "1",
        "description_cod_act": "Venta",
    })
    .to_string()
}

async fn start_driver(chromedriver: &PathBuf) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning chromedriver");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(20), async || {
        http.get(format!("{base}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "chromedriver did not start");
    Driver { child, base }
}

async fn new_browser(driver: &Driver, chromium: &PathBuf, width: u32) -> Browser {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-extensions", format!("--window-size={width},900")],
            "mobileEmulation": if width < 500 {
                json!({ "deviceMetrics": { "width": width, "height": 800, "pixelRatio": 1.0 } })
            } else { Value::Null },
        }
    } } });
    let caps = {
        let mut c = caps;
        if width >= 500 {
            c["capabilities"]["alwaysMatch"]["goog:chromeOptions"]
                .as_object_mut()
                .unwrap()
                .remove("mobileEmulation");
        }
        c
    };
    let res = http
        .post(format!("{}/session", driver.base))
        .json(&caps)
        .send()
        .await
        .expect("new session");
    let v: Value = res.json().await.unwrap();
    let id = v["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {v}"))
        .to_owned();
    Browser {
        http,
        url: format!("{}/session/{id}", driver.base),
    }
}

#[tokio::test]
async fn console_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (
        find(&["chromium", "chromium-browser"]),
        find(&["chromedriver"]),
    ) else {
        assert!(!in_ci(), "CI=true but chromium or chromedriver is missing");
        eprintln!(
            "skipped: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let (remote, hits) = remote_site();
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    let console = env.token("acme", "console", None);
    let (report, report_id) = env.token_with_id("acme", "report", None, Some("BI extractor"));
    let evil = format!(
        r#"<p onclick="window.pwned=1">Hola <b>cliente</b></p><script>document.title='owned';window.pwned=1</script>
<img src="http://{remote}/pixel.gif" onerror="document.title='owned'"><a href="javascript:window.pwned=1">click</a>
<a href="http://{remote}/phish">link</a><style>body{{display:none}} @import url(http://{remote}/a.css);</style>
<link rel="stylesheet" href="http://{remote}/b.css"><div style="position:fixed;top:0;left:0;width:100%;height:100%;background:url(http://{remote}/bg.png)">overlay</div>
<iframe src="http://{remote}/frame"></iframe><p>{}</p>"#,
        "x".repeat(5000)
    );
    let mut lines = vec![
        row(
            "evil-html",
            "2026-10-05 09:00:00",
            &format!(
                "<script>document.title='owned'</script><img src=http://{remote}/s.gif onerror=window.pwned=1>"
            ),
            &evil,
        ),
        row(
            "evil-text",
            "2026-10-05 09:01:00",
            "\u{202E}fdp.exe \u{202D} RTL",
            &format!(
                "<script>window.pwned=1 & 1 < 2 {}\n{}",
                "\u{202E}gnp.exe",
                "y".repeat(20000)
            ),
        ),
        row(
            "big",
            "2026-10-05 09:02:00",
            "one megabyte",
            &"palabra ".repeat(130_000),
        ),
        row(
            "inline-image",
            "2026-10-05 09:03:00",
            "inline images",
            &format!(
                r#"<p>Logo:</p><img id="logo" alt="logo" src="data:image/png;base64,{PNG_2X3}">
<img alt="svg" src="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' onload='top.document.title=%22owned%22'%3E%3C/svg%3E">
<img alt="tracker" src="http://{remote}/open.png"><a href="data:text/html,%3Cscript%3Ewindow.pwned=1%3C/script%3E">data link</a>"#
            ),
        ),
    ];
    for i in 0..60 {
        let subject = if i % 6 == 0 {
            "Factura pendiente"
        } else {
            "Seguimiento"
        };
        lines.push(row(
            &format!("c-{i:02}"),
            &format!("2026-10-0{} 1{}:00:00", 1 + i % 7, i % 10),
            subject,
            "Gracias por escribir",
        ));
    }
    env.import_ndjson("acme", &lines.join("\n"));
    let srv = env.serve(None);
    let base = format!("http://{}", srv.addr);
    let driver = start_driver(&chromedriver).await;
    let b = new_browser(&driver, &chromium, 1280).await;

    // Without a session: the login page.
    b.goto(&format!("{base}/console/interactions")).await;
    assert!(b.current_url().await.ends_with("/console/login"));
    b.screenshot("login").await;
    b.type_into("#token", &console).await;
    b.click("button[type=submit]").await;
    let signed_in = eventually(Duration::from_secs(10), async || {
        b.current_url().await.ends_with("/console/")
    })
    .await;
    assert!(signed_in, "signed in");
    assert!(!b.current_url().await.contains(&console), "never in a URL");

    b.goto(&format!("{base}/console/?from=2026-10-01&to=2026-10-07"))
        .await;
    let total = b
        .eval("return document.getElementById('total').textContent")
        .await;
    assert_eq!(total, "64");
    b.screenshot("overview").await;

    // Keyboard: Tab to the search field, type, Enter.
    b.goto(&format!(
        "{base}/console/interactions?from=2026-10-01&to=2026-10-07"
    ))
    .await;
    b.screenshot("interactions").await;
    let mut reached = false;
    for _ in 0..25 {
        b.press("\u{E004}").await;
        if b.eval("return document.activeElement && document.activeElement.id")
            .await
            == "q"
        {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches the search field");
    b.eval("document.activeElement.value = ''; return 1").await;
    b.type_into("#q", "factura").await;
    b.press("\u{E007}").await;
    let searched = eventually(Duration::from_secs(10), async || {
        b.current_url().await.contains("q=factura")
    })
    .await;
    assert!(searched, "Enter submits the search");
    let rows = b
        .eval("return document.querySelectorAll('#rows tbody tr').length")
        .await;
    assert_eq!(rows, 10);
    b.assert_no_script_ran().await;

    // Hostile content, live.
    for (name, path) in [
        ("interaction-html", "/console/interactions/evil-html"),
        ("interaction-text", "/console/interactions/evil-text"),
        ("interaction-1mb", "/console/interactions/big"),
    ] {
        b.goto(&format!("{base}{path}")).await;
        b.assert_no_script_ran().await;
        let shown = b
            .eval("var h = document.querySelector('h1'); return h ? h.getBoundingClientRect().height > 0 : false")
            .await;
        assert_eq!(
            shown, true,
            "{name}: the page is visible, not hidden by the e-mail"
        );
        b.screenshot(name).await;
    }
    b.goto(&format!("{base}/console/interactions/evil-text"))
        .await;
    let body = b
        .eval("return [document.querySelector('iframe') === null, document.getElementById('body').textContent.slice(0, 50)]")
        .await;
    assert_eq!(
        body,
        json!([true, "<script>window.pwned=1 & 1 < 2 [U+202E]gnp.exe\nyyy"]),
        "a text body is text, not framed"
    );
    b.goto(&format!("{base}/console/interactions/evil-html"))
        .await;
    let sandbox = b
        .eval("var f = document.querySelector('iframe'); return [f.getAttribute('sandbox'), f.contentDocument === null]")
        .await;
    assert_eq!(sandbox, json!(["", true]), "sandboxed, opaque origin");
    // An inline PNG is shown inside the frame; the SVG, the remote image and the data: link
    // keep no URL.
    b.goto(&format!("{base}/console/interactions/inline-image"))
        .await;
    b.assert_no_script_ran().await;
    let frame = b.element("iframe.body").await;
    b.call(
        reqwest::Method::POST,
        "/frame",
        Some(json!({ "id": { ELEMENT: frame } })),
    )
    .await;
    let logo = b.element("img[alt=logo]").await;
    let width = b
        .call(
            reqwest::Method::GET,
            &format!("/element/{logo}/property/naturalWidth"),
            None,
        )
        .await;
    assert_eq!(width, 2, "the inline PNG is decoded and shown");
    let sources = b
        .call(
            reqwest::Method::POST,
            "/elements",
            Some(json!({ "using": "css selector", "value": "img[src], a[href]" })),
        )
        .await;
    assert_eq!(
        sources.as_array().map(Vec::len),
        Some(1),
        "only the PNG keeps a URL: {sources}"
    );
    b.call(reqwest::Method::POST, "/frame/parent", Some(json!({})))
        .await;
    b.screenshot("interaction-inline-image").await;
    // The consumers page: a report token's latest requests are the audit's.
    for day in ["20261001", "20261002", "20261003"] {
        let res = common::client()
            .get(srv.report_url(&format!("{day}000000"), &format!("{day}235959")))
            .header("wolkvox-token", &report)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let store = voxtrail_server::store::Store::open(&env.db_url).unwrap();
    let audited = || {
        store
            .list_audit(&voxtrail_server::store::audit::AuditFilter {
                token_id: Some(report_id),
                ..Default::default()
            })
            .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(10), async || audited().len() == 3).await,
        "three requests audited"
    );
    b.goto(&format!("{base}/console/tokens")).await;
    let shown = b
        .eval(&format!(
            "var rows = document.querySelectorAll('table.requests[data-token=\"{report_id}\"] tbody tr'); \
             return [rows.length, rows[0].cells[0].textContent, rows[0].cells[2].textContent]"
        ))
        .await;
    let newest = audited().pop().unwrap();
    assert_eq!(
        shown,
        json!([3, newest.at, "20261003000000–20261003235959"]),
        "the audit's requests, newest first"
    );
    b.screenshot("tokens").await;
    b.assert_no_script_ran().await;

    // A phone-sized viewport: nothing wider than the screen.
    let phone = new_browser(&driver, &chromium, 375).await;
    phone.goto(&format!("{base}/console/login")).await;
    phone.type_into("#token", &console).await;
    phone.click("button[type=submit]").await;
    let signed_in = eventually(Duration::from_secs(10), async || {
        phone.current_url().await.ends_with("/console/")
    })
    .await;
    assert!(signed_in, "signed in on the phone");
    for (name, path) in [
        ("phone-overview", "/console/?from=2026-10-01&to=2026-10-07"),
        (
            "phone-interactions",
            "/console/interactions?from=2026-10-01&to=2026-10-07",
        ),
        ("phone-interaction", "/console/interactions/evil-text"),
    ] {
        phone.goto(&format!("{base}{path}")).await;
        assert!(
            !phone.current_url().await.contains("/login"),
            "{name}: signed in"
        );
        let fits = phone
            .eval("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        assert!(
            fits[0].as_u64() <= fits[1].as_u64(),
            "{name}: page wider than the viewport {fits}"
        );
        phone.screenshot(name).await;
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a request left for another origin"
    );
    let _ = b.call(reqwest::Method::DELETE, "", None).await;
    let _ = phone.call(reqwest::Method::DELETE, "", None).await;
}
