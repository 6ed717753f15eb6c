//! Client SDK for the Wolkvox Reports Manager API, hosted (`https://wv{code}.wolkvox.com`) or
//! self-hosted with voxtrail.
//!
//! Owns the HTTP client side of the wire contract: typed `chat_12` and `token_info` calls, a
//! generic call for any report name, tolerant parsing of the hosted API's quirks ([`parse`]),
//! politeness (one request at a time per token in a process, an optional lock file across
//! processes, backoff with jitter), a clear final error on a used-up daily limit (with the
//! limit and today's use from one `token_info` call, when the server still answers it) and
//! windowing (≤ 31-day windows, halved on "too many records" or on a full answer from a
//! truncating server). Depends on `voxtrail-wire`, never on the server.
//!
//! ```
//! use std::time::Duration;
//! use voxtrail_client::Client;
//!
//! // Against the hosted API of server code 0002 …
//! let hosted = Client::builder(Client::server_url("0002"), "my-token").build().unwrap();
//! assert_eq!(hosted.base_url(), "https://wv0002.wolkvox.com");
//! // … or any voxtrail server, with a shorter timeout.
//! let local = Client::builder("http://127.0.0.1:8080/", "my-token")
//!     .timeout(Duration::from_secs(10))
//!     .build()
//!     .unwrap();
//! assert_eq!(local.base_url(), "http://127.0.0.1:8080");
//! ```
//!
//! A whole month of `chat_12`, split and retried as needed (needs a server, so not run here):
//!
//! ```no_run
//! # async fn f() -> Result<(), voxtrail_client::Error> {
//! use voxtrail_client::{Client, parse_wall_clock};
//! let client = Client::builder("http://127.0.0.1:8080", "my-token").build()?;
//! let ini = parse_wall_clock("20261001000000").unwrap();
//! let end = parse_wall_clock("20261031235959").unwrap();
//! for row in client.chat_12(ini, end).await? {
//!     println!("{} {} {}", row.date, row.conn_id, row.subject);
//! }
//! println!("{:?}", client.token_info().await?);
//! # Ok(()) }
//! ```

pub mod error;
pub mod parse;
mod polite;
pub mod window;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use voxtrail_wire::{Chat12Row, TokenInfoRow};

pub use error::Error;
pub use parse::{Answer, FeedPage, Row, parse_answer};
pub use window::{Window, format_wall_clock, parse_wall_clock};

use polite::{Backoff, FileLock};

/// Path of the reports endpoint.
pub const REPORTS_PATH: &str = "/api/v2/reports_manager.php";
/// Path of the information endpoint (`token_info`).
pub const INFORMATION_PATH: &str = "/api/v2/information.php";
/// Path of a voxtrail server's change feed (the hosted API has none).
pub const FEED_PATH: &str = voxtrail_wire::feed::FEED_PATH;
/// Most rows a feed page may hold.
pub const MAX_FEED_LIMIT: u32 = voxtrail_wire::feed::MAX_FEED_LIMIT;
/// Rows at which a truncating server is assumed to have cut the answer (the hosted limit).
pub const DEFAULT_TRUNCATION_THRESHOLD: usize = 60_000;

/// Settings of a [`Client`]; start with [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base: String,
    token: String,
    timeout: Duration,
    connect_timeout: Duration,
    attempts: u32,
    backoff: Backoff,
    truncation_threshold: usize,
    empty_404: bool,
    lock_file: Option<PathBuf>,
    timezone: Option<chrono_tz::Tz>,
}

impl ClientBuilder {
    /// Time allowed for one whole request, answer body included (default 120 s; the server
    /// may take up to 60 s to start answering).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Time allowed to connect (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Attempts per request before giving up on retryable failures (default 8, at least 1).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// First backoff delay and its cap (defaults 500 ms and 60 s).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff { base, max };
        self
    }

    /// Answers with at least this many rows are taken as silently truncated and the window is
    /// halved (default 60,000, the hosted API's cap).
    pub fn truncation_threshold(mut self, rows: usize) -> Self {
        self.truncation_threshold = rows.max(1);
        self
    }

    /// Read the hosted API's `404 "Validate dates entered"` as an empty window (default true).
    pub fn empty_window_404(mut self, yes: bool) -> Self {
        self.empty_404 = yes;
        self
    }

    /// Hold an exclusive advisory lock on this file during each request, so several processes
    /// sharing a token take turns.
    pub fn lock_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.lock_file = Some(path.into());
        self
    }

    /// The operation's time zone, used to say when a token's day resets.
    pub fn timezone(mut self, tz: chrono_tz::Tz) -> Self {
        self.timezone = Some(tz);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let base = self.base.trim().trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| Error::Config(format!("base URL {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "base URL {base:?}: scheme must be http or https"
            )));
        }
        if self.token.trim().is_empty() {
            return Err(Error::Config("the token is empty".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("voxtrail-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?;
        Ok(Client {
            http,
            token_lock: polite::token_lock(&self.token),
            base,
            cfg: Arc::new(self),
        })
    }
}

/// A client of one server with one token. Cheap to clone; clones share the token's lock.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token_lock: Arc<tokio::sync::Mutex<()>>,
    cfg: Arc<ClientBuilder>,
}

/// What one attempt came to.
enum Outcome {
    Done(Answer),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fail(Error),
}

impl Client {
    /// Settings for a client of `base` (a URL such as `http://127.0.0.1:8080` or
    /// [`Client::server_url`]) using `token`.
    pub fn builder(base: impl Into<String>, token: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base.into(),
            token: token.into(),
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            attempts: 8,
            backoff: Backoff {
                base: Duration::from_millis(500),
                max: Duration::from_secs(60),
            },
            truncation_threshold: DEFAULT_TRUNCATION_THRESHOLD,
            empty_404: true,
            lock_file: None,
            timezone: None,
        }
    }

    /// The hosted API's base URL for a server code: `https://wv{code}.wolkvox.com`.
    ///
    /// ```
    /// assert_eq!(voxtrail_client::Client::server_url("0032"), "https://wv0032.wolkvox.com");
    /// ```
    pub fn server_url(code: &str) -> String {
        format!("https://wv{}.wolkvox.com", code.trim())
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The truncation threshold in force.
    pub fn truncation_threshold(&self) -> usize {
        self.cfg.truncation_threshold
    }

    /// One request to the reports endpoint: `api` plus `params`, no windowing. Rows come
    /// back as read, whatever the report.
    pub async fn call(&self, api: &str, params: &[(&str, &str)]) -> Result<Vec<Row>, Error> {
        Ok(self.get(REPORTS_PATH, &with_api(api, params)).await?.rows)
    }

    /// The per-hour digests of `ini..=end` (at most 31 days) from a voxtrail server
    /// (`voxtrail_wire::hours::HOURS_PATH`): rows with `hour`, `records` and `digest`. A
    /// source without the endpoint answers `Error::Refused { status: 404, .. }`.
    pub async fn hours(&self, ini: NaiveDateTime, end: NaiveDateTime) -> Result<Vec<Row>, Error> {
        let (i, e) = (format_wall_clock(ini), format_wall_clock(end));
        let params = [("date_ini", i.as_str()), ("date_end", e.as_str())];
        Ok(self
            .get(
                voxtrail_wire::hours::HOURS_PATH,
                &with_api(voxtrail_wire::CHAT_12, &params),
            )
            .await?
            .rows)
    }

    /// One page of a voxtrail server's change feed ([`FEED_PATH`]): at most `limit` rows
    /// (1 to [`MAX_FEED_LIMIT`]) stored or changed after `after` (`None`: from the beginning),
    /// in the order the changes became visible, and the cursor to pass back as `after`. Counts
    /// as one use; retried like the reports.
    ///
    /// A source without the feed (the hosted API, an older voxtrail: 404, or a 2xx page that is
    /// not JSON) is [`Error::NoFeed`]; a cursor the source does not know (another source or
    /// operation, or junk) is [`Error::InvalidCursor`]. A page is taken only whole: its
    /// `cursor` present and its rows as many as its `msg` says, so a cursor never moves past a
    /// row that was not read.
    pub async fn feed(&self, after: Option<&str>, limit: u32) -> Result<FeedPage, Error> {
        if !(1..=MAX_FEED_LIMIT).contains(&limit) {
            return Err(Error::Config(format!(
                "feed page of {limit} rows: it must be 1 to {MAX_FEED_LIMIT}"
            )));
        }
        if after.is_some_and(|a| a.trim().is_empty()) {
            return Err(Error::Config("the feed cursor is empty".into()));
        }
        let limit_text = limit.to_string();
        let mut query = vec![("limit", limit_text.as_str())];
        if let Some(a) = after {
            query.push(("after", a));
        }
        let answer = match self.get(FEED_PATH, &query).await {
            Ok(a) => a,
            Err(Error::Refused {
                status: 404, msg, ..
            }) => {
                return Err(Error::NoFeed {
                    why: format!("{FEED_PATH} answered 404 {}", msg.trim()),
                });
            }
            Err(Error::Refused {
                status: 400, msg, ..
            }) if parse::normalize(&msg) == voxtrail_wire::feed::INVALID_CURSOR => {
                return Err(Error::InvalidCursor {
                    cursor: after.unwrap_or_default().to_owned(),
                });
            }
            Err(e) => return Err(e),
        };
        FeedPage::from_answer(answer, limit).map_err(|why| Error::NoFeed {
            why: format!("{FEED_PATH} answered 200 but {why}"),
        })
    }

    /// `token_info`: the token's limit and today's use (counts as one use).
    pub async fn token_info(&self) -> Result<TokenInfoRow, Error> {
        let a = self.get(INFORMATION_PATH, TOKEN_INFO_QUERY).await?;
        a.rows
            .first()
            .map(Row::to_token_info)
            .ok_or_else(|| Error::Refused {
                status: 200,
                error: "EMPTY ANSWER".into(),
                msg: "token_info answered without data".into(),
            })
    }

    /// Every row of report `api` whose date lies in `ini..=end`: the range is cut into
    /// windows of at most 31 days, and each window that is refused for too many records or
    /// comes back full (≥ the truncation threshold) is halved, down to one second.
    pub async fn report(
        &self,
        api: &str,
        ini: NaiveDateTime,
        end: NaiveDateTime,
    ) -> Result<Vec<Row>, Error> {
        let w =
            Window::new(ini, end).ok_or_else(|| Error::Config(format!("{ini} is after {end}")))?;
        let mut rows = Vec::new();
        for part in w.split(chrono::Duration::days(window::MAX_WINDOW_DAYS)) {
            rows.extend(self.window(api, part).await?);
        }
        Ok(rows)
    }

    /// Typed `chat_12` rows of `ini..=end` (see [`Client::report`]).
    pub async fn chat_12(
        &self,
        ini: NaiveDateTime,
        end: NaiveDateTime,
    ) -> Result<Vec<Chat12Row>, Error> {
        Ok(self
            .report(voxtrail_wire::CHAT_12, ini, end)
            .await?
            .iter()
            .map(Row::to_chat12)
            .collect())
    }

    /// Every row of one window (at most 31 days), halving it as often as needed.
    pub async fn window(&self, api: &str, w: Window) -> Result<Vec<Row>, Error> {
        let mut todo = std::collections::VecDeque::from([w]);
        let mut rows = Vec::new();
        while let Some(w) = todo.pop_front() {
            let (ini, end) = (w.date_ini(), w.date_end());
            let params = [("date_ini", ini.as_str()), ("date_end", end.as_str())];
            let too_many = match self.get(REPORTS_PATH, &with_api(api, &params)).await {
                Ok(a) if a.rows.len() >= self.cfg.truncation_threshold => Some(a.rows.len()),
                Ok(a) => {
                    rows.extend(a.rows);
                    None
                }
                Err(Error::TooManyRecords { .. }) => Some(self.cfg.truncation_threshold),
                Err(e) => return Err(e),
            };
            if let Some(n) = too_many {
                let (a, b) = w.halves().ok_or_else(|| Error::Unsplittable {
                    window: w.to_string(),
                    rows: n,
                })?;
                tracing::debug!(window = %w, "too many rows; halving");
                todo.push_front(b);
                todo.push_front(a);
            }
        }
        Ok(rows)
    }

    /// One logical request (`query` as sent), retried on retryable failures.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Answer, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.in_turn(path, query).await? {
                Outcome::Done(a) => return Ok(a),
                // Say how much of the limit is used, if the server still answers token_info
                // (never asked again when token_info itself was refused).
                Outcome::Fail(Error::TokenLimitExceeded { resets, .. })
                    if path != INFORMATION_PATH =>
                {
                    return Err(Error::TokenLimitExceeded {
                        resets,
                        usage: self.usage_after_limit().await,
                    });
                }
                Outcome::Fail(e) => return Err(e),
                Outcome::Retry { reason, after } => {
                    if attempt >= self.cfg.attempts {
                        return Err(Error::GaveUp {
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    let delay = after
                        .map(|a| a.min(self.cfg.backoff.max))
                        .unwrap_or_else(|| self.cfg.backoff.delay(attempt));
                    tracing::warn!(attempt, ?delay, %reason, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One attempt in this token's turn: the process-wide token lock and the lock file (if
    /// any) are held while it runs.
    async fn in_turn(&self, path: &str, query: &[(&str, &str)]) -> Result<Outcome, Error> {
        let _turn = self.token_lock.lock().await;
        let _file = match &self.cfg.lock_file {
            Some(p) => Some(
                FileLock::acquire(p)
                    .await
                    .map_err(|e| Error::Config(format!("locking {}: {e}", p.display())))?,
            ),
            None => None,
        };
        Ok(self.once(path, query).await)
    }

    /// After a 403 TOKEN LIMIT EXCEEDED: one `token_info` attempt, not retried. The hosted API
    /// may answer it; voxtrail counts it as a use and refuses it once the limit is used. Any
    /// failure means `None` — the refusal that led here is what the caller gets either way.
    async fn usage_after_limit(&self) -> Option<Box<TokenInfoRow>> {
        match self.in_turn(INFORMATION_PATH, TOKEN_INFO_QUERY).await {
            Ok(Outcome::Done(a)) => a.rows.first().map(|r| Box::new(r.to_token_info())),
            _ => None,
        }
    }

    /// One HTTP exchange and what it means.
    async fn once(&self, path: &str, query: &[(&str, &str)]) -> Outcome {
        let url = format!("{}{}", self.base, path);
        let resp = match self
            .http
            .get(&url)
            .query(query)
            .header("wolkvox-token", &self.cfg.token)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: format!("network: {}", error_chain(&e)),
                    after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let more = path == FEED_PATH
            && resp
                .headers()
                .get(voxtrail_wire::feed::FEED_MORE_HEADER)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Retry {
                    reason: format!("reading the answer: {}", error_chain(&e)),
                    after: None,
                };
            }
        };
        let answer = match parse_answer(&body) {
            Ok(a) => Answer { more, ..a },
            // A web server that answers every path (a front page, a redirect to one) is not a
            // feed: no JSON object at all, unlike a cut one, which is retried below.
            Err(_)
                if path == FEED_PATH
                    && (200..300).contains(&status)
                    && body.trim_ascii_start().first() != Some(&b'{') =>
            {
                return Outcome::Fail(Error::NoFeed {
                    why: format!("{FEED_PATH} answered HTTP {status} without JSON"),
                });
            }
            Err(e) if status >= 500 || status == 429 || status == 200 => {
                return Outcome::Retry {
                    reason: format!("HTTP {status}, unreadable answer: {e}"),
                    after: retry_after,
                };
            }
            Err(_) => {
                return Outcome::Fail(Error::Refused {
                    status,
                    error: String::new(),
                    msg: String::from_utf8_lossy(&body).chars().take(200).collect(),
                });
            }
        };
        self.classify(path, status, answer, retry_after)
    }

    /// The one place an answer's status and texts are turned into a decision.
    fn classify(&self, path: &str, http: u16, a: Answer, retry_after: Option<Duration>) -> Outcome {
        // The hosted API may put the real status in `code` behind an HTTP 200.
        let code: Option<u16> = a.code.parse().ok();
        let status = match code {
            Some(c) if http == 200 && c >= 100 && c != 200 => c,
            _ => http,
        };
        let msg = a.msg_normalized();
        let refused = |a: &Answer| Error::Refused {
            status,
            error: a.error.clone().unwrap_or_default(),
            msg: a.msg.clone(),
        };
        match status {
            200 => Outcome::Done(a),
            // Only a report's window can be empty this way: on the feed, a 404 is no feed.
            404 if self.cfg.empty_404
                && path == REPORTS_PATH
                && msg.contains("VALIDATE DATES ENTERED") =>
            {
                Outcome::Done(Answer {
                    rows: Vec::new(),
                    ..a
                })
            }
            401 => Outcome::Fail(Error::Unauthorized { msg: a.msg }),
            403 if msg.contains("SIMULTANEOUS") => Outcome::Retry {
                reason: format!("403 {}", a.msg),
                after: None,
            },
            403 if msg.contains("MAINTENANCE") => Outcome::Retry {
                reason: format!("403 {}", a.msg),
                after: retry_after,
            },
            403 if msg.contains("TOKEN LIMIT EXCEEDED") => {
                Outcome::Fail(Error::TokenLimitExceeded {
                    resets: self.reset_text(),
                    usage: None,
                })
            }
            403 if msg.contains("VALIDATE TOKEN") => Outcome::Fail(Error::InvalidToken),
            400 if (msg.contains("RECORDS") && msg.contains("ABOVE THE LIMIT"))
                || (msg.contains("EXCEEDS THE LIMIT") && msg.contains("MB")) =>
            {
                Outcome::Fail(Error::TooManyRecords { msg: a.msg })
            }
            429 | 500..=599 => Outcome::Retry {
                reason: format!("HTTP {status} {}", a.msg),
                after: retry_after,
            },
            _ => Outcome::Fail(refused(&a)),
        }
    }

    /// When the token's day resets: the next midnight of the operation's time zone.
    fn reset_text(&self) -> String {
        let Some(tz) = self.cfg.timezone else {
            return "it resets at the next midnight of the operation's time zone".into();
        };
        let now = chrono::Utc::now().with_timezone(&tz);
        let midnight = now
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0));
        match midnight.map(|m| m - now.naive_local()) {
            Some(left) => format!(
                "it resets at midnight {} (in {}h {:02}m)",
                tz.name(),
                left.num_hours(),
                left.num_minutes() % 60
            ),
            None => format!("it resets at midnight {}", tz.name()),
        }
    }
}

/// The query of `token_info`.
const TOKEN_INFO_QUERY: &[(&str, &str)] = &[("api", "token_info")];

/// `api` first, then `params` (an `api` among them is dropped: the argument wins).
fn with_api<'a>(api: &'a str, params: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut query = vec![("api", api)];
    query.extend(params.iter().filter(|(k, _)| *k != "api"));
    query
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
