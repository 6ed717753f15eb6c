//! A fault-injecting fake of the hosted Reports Manager API on a raw TCP listener
//! (127.0.0.1:0): it plays the hosted API's quirks, scripted faults (500 bursts, connection
//! resets, truncated JSON, cut bodies, slow and hung answers, 403 SIMULTANEOUS, maintenance)
//! and a row cap that either refuses or truncates silently. Shared by the client's tests and
//! the `voxtrail pull` tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One stored row: the chat_12 fields; empty `cod_act`/`description_cod_act` are left out of
/// quirky answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRow {
    pub fields: Vec<(String, String)>,
}

impl FakeRow {
    pub fn chat12(conn_id: &str, date: &str, with_cod_act: bool) -> Self {
        let cod = if with_cod_act { "7" } else { "" };
        let desc = if with_cod_act { "Venta \"x\"" } else { "" };
        let fields = [
            ("conn_id", conn_id),
            ("agent_id", "12"),
            ("agent_name", "Ána María"),
            ("channel", "email"),
            ("from", "ana@cc.co"),
            ("to", "a@x.co; b@y.co"),
            ("subject", "Re: pedido"),
            ("body", "línea 1\nlínea 2, \"citada\"\r\n\tfin"),
            ("date", date),
            ("cod_act", cod),
            ("description_cod_act", desc),
        ];
        Self {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn get(&self, k: &str) -> &str {
        self.fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn wall(&self) -> String {
        self.get("date")
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }

    fn json(&self, quirky: bool) -> String {
        let mut o = String::from("{");
        let mut first = true;
        for (k, v) in &self.fields {
            if quirky && v.is_empty() && (k == "cod_act" || k == "description_cod_act") {
                continue;
            }
            if !first {
                o.push(',');
            }
            first = false;
            o.push_str(&serde_json::to_string(k).unwrap());
            o.push(':');
            o.push_str(&serde_json::to_string(v).unwrap());
        }
        o.push('}');
        o
    }
}

/// A scripted fault, applied to the next request(s) in order.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 500 with the hosted error shape.
    Status500,
    /// HTTP 502 with an HTML body (a proxy).
    BadGateway,
    /// Read the request, then close the connection with a reset, answering nothing.
    Reset,
    /// A complete HTTP answer whose JSON body is cut in the middle.
    TruncatedJson,
    /// Announce the full length, send half the body, then close.
    CutBody,
    /// Answer normally after this delay.
    Slow(Duration),
    /// 403 EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2).
    Simultaneous,
    /// 403 maintenance with `Retry-After: 0`.
    Maintenance,
    /// 401 PLEASE ENTER THE WOLKVOX-TOKEN.
    Unauthorized,
    /// 403 PLEASE VALIDATE TOKEN.
    InvalidToken,
    /// 403 TOKEN LIMIT EXCEEDED.
    TokenLimit,
    /// 403 TOKEN LIMIT EXCEEDED on the reports endpoint only; `token_info` still answers
    /// (as the hosted API may).
    TokenLimitOnReports,
}

/// How the fake behaves beyond its script.
#[derive(Debug, Clone, Default)]
pub struct Mode {
    /// Above this many rows: refuse (`refuse = true`) or silently truncate to it.
    pub cap: Option<usize>,
    pub refuse: bool,
    /// Play the hosted quirks: numeric/"0" codes, "null" error, odd msg spacing, data as an
    /// object, missing cod_act, empty window as 404 "Validate dates entered".
    pub quirks: bool,
}

#[derive(Default)]
struct State {
    rows: Vec<FakeRow>,
    script: VecDeque<Fault>,
    /// A fault applied to every request while set.
    always: Option<Fault>,
    /// `token_limit`, `token_use_today`, `all_token_today` answered by `token_info`.
    token_info: Option<(u64, u64, u64)>,
    /// Paths other than the two the hosted API serves get a 200 HTML page (a front page),
    /// not a 404.
    front_page: bool,
}

/// A running fake server.
#[derive(Clone)]
pub struct Fake {
    pub addr: String,
    state: Arc<Mutex<State>>,
    mode: Arc<Mode>,
    pub requests: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
}

impl Fake {
    pub async fn start(rows: Vec<FakeRow>, mode: Mode) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            addr: listener.local_addr().unwrap().to_string(),
            state: Arc::new(Mutex::new(State {
                rows,
                ..Default::default()
            })),
            mode: Arc::new(mode),
            requests: Default::default(),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
        };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let f = f.clone();
                tokio::spawn(async move { f.serve(s).await });
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    /// Scripted faults not met yet.
    pub fn script_left(&self) -> usize {
        self.state.lock().unwrap().script.len()
    }

    pub fn always(&self, fault: Option<Fault>) {
        self.state.lock().unwrap().always = fault;
    }

    /// The numbers `token_info` answers: limit, this token's use today, all tokens' use.
    pub fn token_info(&self, limit: u64, used: u64, all: u64) {
        self.state.lock().unwrap().token_info = Some((limit, used, all));
    }

    /// Answer unknown paths with a 200 HTML page instead of a 404.
    pub fn front_page_for_unknown_paths(&self, yes: bool) {
        self.state.lock().unwrap().front_page = yes;
    }

    pub fn add_rows(&self, rows: impl IntoIterator<Item = FakeRow>) {
        self.state.lock().unwrap().rows.extend(rows);
    }

    /// Replaces the stored row with the same conn_id (a row changed upstream), or adds it.
    pub fn upsert_row(&self, row: FakeRow) {
        let mut st = self.state.lock().unwrap();
        match st
            .rows
            .iter_mut()
            .find(|r| r.get("conn_id") == row.get("conn_id"))
        {
            Some(r) => *r = row,
            None => st.rows.push(row),
        }
    }

    pub fn rows(&self) -> Vec<FakeRow> {
        self.state.lock().unwrap().rows.clone()
    }

    async fn serve(&self, mut s: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&buf).into_owned();
        self.answer(&mut s, &head, n).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    async fn answer(&self, s: &mut TcpStream, head: &str, n: usize) {
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let q = |name: &str| -> String {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
                .next_back()
                .unwrap_or_default()
        };
        let fault = {
            let mut st = self.state.lock().unwrap();
            st.script.pop_front().or_else(|| st.always.clone())
        };
        let quirky = self.mode.quirks;
        match fault {
            Some(Fault::Status500) => {
                return send(s, 500, &err(500, "INTERNAL SERVER ERROR", "oops"), &[]).await;
            }
            Some(Fault::BadGateway) => {
                return send(s, 502, "<html>Bad Gateway</html>", &[]).await;
            }
            Some(Fault::Reset) => {
                #[allow(deprecated)] // set_linger(0) is exactly what makes a reset
                let _ = s.set_linger(Some(Duration::ZERO));
                return;
            }
            Some(Fault::Simultaneous) => {
                let m = "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)";
                return send(s, 403, &err(403, "FORBIDDEN", m), &[]).await;
            }
            Some(Fault::Maintenance) => {
                let m = "THE API IS TEMPORARILY DISABLED FOR MAINTENANCE";
                return send(s, 403, &err(403, "FORBIDDEN", m), &["Retry-After: 0"]).await;
            }
            Some(Fault::Unauthorized) => {
                let m = "PLEASE ENTER THE WOLKVOX-TOKEN";
                return send(s, 401, &err(401, "UNAUTHORIZED", m), &[]).await;
            }
            Some(Fault::InvalidToken) => {
                let m = "PLEASE VALIDATE TOKEN";
                return send(s, 403, &err(403, "FORBIDDEN", m), &[]).await;
            }
            Some(Fault::TokenLimit) => {
                let m = "TOKEN LIMIT EXCEEDED";
                return send(s, 403, &err(403, "FORBIDDEN", m), &[]).await;
            }
            Some(Fault::TokenLimitOnReports) if !path.ends_with("information.php") => {
                let m = "TOKEN LIMIT EXCEEDED";
                return send(s, 403, &err(403, "FORBIDDEN", m), &[]).await;
            }
            Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
            _ => {}
        }
        // The hosted API serves these two paths only: anything else (the change feed, the
        // per-hour digests of a voxtrail) is its web server's 404 page.
        if !path.ends_with("/reports_manager.php") && !path.ends_with("/information.php") {
            if self.state.lock().unwrap().front_page {
                return send(s, 200, "<html><body><h1>Wolkvox</h1></body></html>", &[]).await;
            }
            return send(
                s,
                404,
                "<html><body><h1>404 Not Found</h1></body></html>",
                &[],
            )
            .await;
        }
        if !head.to_ascii_lowercase().contains("wolkvox-token:") {
            let m = "PLEASE ENTER THE WOLKVOX-TOKEN";
            return send(s, 401, &err(401, "UNAUTHORIZED", m), &[]).await;
        }
        if path.ends_with("information.php") {
            let info = self.state.lock().unwrap().token_info;
            let (limit, used, all) = info.unwrap_or((10_000, 1, 1));
            let body = format!(
                r#"{{"code":"200","error":null,"msg":"ok","data":[{{"description":"fake","token_limit":"{limit}","token_use_today":"{used}","all_token_today":"{all}","available_consumption_options":"{}"}}]}}"#,
                limit.saturating_sub(used)
            );
            return send(s, 200, &body, &[]).await;
        }
        let (ini, end) = (q("date_ini"), q("date_end"));
        let mut rows: Vec<FakeRow> = {
            let st = self.state.lock().unwrap();
            st.rows
                .iter()
                .filter(|r| {
                    let w = r.wall();
                    w >= ini && w <= end
                })
                .cloned()
                .collect()
        };
        rows.sort_by_key(|r| r.wall());
        if let Some(cap) = self.mode.cap
            && rows.len() > cap
        {
            if self.mode.refuse {
                let m = format!(
                    "THE RESULT HAS {} RECORDS, ABOVE THE LIMIT OF {cap}; NARROW THE DATE RANGE",
                    rows.len()
                );
                return send(s, 400, &err(400, "BAD REQUEST", &m), &[]).await;
            }
            rows.truncate(cap);
        }
        if rows.is_empty() && quirky {
            let body = r#"{"code":"404","error":"null","msg":"Validate dates entered","data":[]}"#;
            return send(s, 404, body, &[]).await;
        }
        let objs: Vec<String> = rows.iter().map(|r| r.json(quirky)).collect();
        let body = if !quirky {
            format!(
                r#"{{"code":"200","error":null,"msg":"{} records were found","data":[{}]}}"#,
                objs.len(),
                objs.join(",")
            )
        } else {
            match n % 3 {
                0 => format!(
                    r#"{{"code":200,"error":"null","msg":"  {}  records were  found ","data":{{{}}}}}"#,
                    objs.len(),
                    objs.iter()
                        .enumerate()
                        .map(|(i, o)| format!("\"{i}\":{o}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                1 => format!(
                    r#"{{"code":"0","error":"","msg":"{} records were found","data":[{}]}}"#,
                    objs.len(),
                    objs.join(",")
                ),
                _ => format!(
                    r#"{{"msg":"{} records were found","code":"200","error":null,"data":[{}]}}"#,
                    objs.len(),
                    objs.join(",")
                ),
            }
        };
        match fault {
            Some(Fault::TruncatedJson) => {
                let cut = &body[..body.len() / 2];
                send(s, 200, cut, &[]).await
            }
            Some(Fault::CutBody) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body.as_bytes()[..body.len() / 2]).await;
                let _ = s.flush().await;
            }
            _ => send(s, 200, &body, &[]).await,
        }
    }
}

fn err(status: u16, error: &str, msg: &str) -> String {
    format!(r#"{{"code":"{status}","error":"{error}","msg":"{msg}","data":[]}}"#)
}

async fn send(s: &mut TcpStream, status: u16, body: &str, headers: &[&str]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body.as_bytes()).await;
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}

/// `n` rows spread one every `step` seconds from `start` (`YYYY-mm-dd HH:MM:SS`), every
/// other row without cod_act.
pub fn spread(prefix: &str, n: usize, start: &str, step_secs: i64) -> Vec<FakeRow> {
    let t0 = chrono::NaiveDateTime::parse_from_str(start, "%Y-%m-%d %H:%M:%S").unwrap();
    (0..n)
        .map(|i| {
            let t = t0 + chrono::Duration::seconds(step_secs * i as i64);
            FakeRow::chat12(
                &format!("{prefix}{i}"),
                &t.format("%Y-%m-%d %H:%M:%S").to_string(),
                i % 2 == 0,
            )
        })
        .collect()
}
