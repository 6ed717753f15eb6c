//! The serving loop: our own accept loop over hyper's HTTP/1 connections, so every connection
//! is bounded (docs/operations.md, "Connections and timeouts").
//!
//! - A connection must send a complete request head within `header_read_timeout_ms` of being
//!   accepted, or of the first byte of a later request; it is closed otherwise (slowloris).
//! - A keep-alive connection with no request in flight and no bytes moving for
//!   `idle_timeout_ms` is closed.
//! - A request head larger than `max_header_bytes` is answered 431 and the connection closed;
//!   hyper's read buffer never grows past that size.
//! - At most `max_connections` connections are open (lowered to what the open-file limit
//!   allows); past it a new connection gets a fixed 503 and is closed, with a rate-limited log
//!   line. Accept errors (EMFILE, ENFILE, …) are logged, rate-limited, and the loop backs off.
//! - Shutdown: stop accepting, close every connection without a request in flight at once,
//!   let answers in flight drain for `shutdown_grace_ms`, then cut whatever is left.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::config::HttpConfig;

/// File descriptors kept out of the connection cap: the database, its read pool and WAL
/// files, logs, and a margin.
pub const FD_RESERVE: u64 = 64;

/// How long the accept loop sleeps after an accept error that is not about one connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The fixed answer to a connection over the cap: the contract's error body, 503.
fn over_cap_answer() -> &'static [u8] {
    static ANSWER: OnceLock<Vec<u8>> = OnceLock::new();
    ANSWER.get_or_init(|| {
        let body =
            voxtrail_wire::error_body(503, "SERVICE UNAVAILABLE", "TOO MANY CONNECTIONS; RETRY SHORTLY");
        let mut a = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(&body);
        a
    })
}

/// The settings of the serving loop, resolved from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
}

impl ServeSettings {
    /// The settings of `http`, with the connection cap lowered to `open_file_limit` minus
    /// [`FD_RESERVE`] when that is smaller (logged).
    pub fn new(http: &HttpConfig, open_file_limit: Option<u64>) -> Self {
        let configured = http.max_connections;
        let mut max_connections = configured as usize;
        if let Some(limit) = open_file_limit {
            let allowed = limit.saturating_sub(FD_RESERVE).max(1);
            if allowed < configured {
                tracing::warn!(
                    configured,
                    open_file_limit = limit,
                    max_connections = allowed,
                    "http.max_connections lowered to what the open-file limit allows"
                );
                max_connections = allowed as usize;
            }
        }
        Self {
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms),
            max_connections,
            max_header_bytes: http.max_header_bytes as usize,
            shutdown_grace: Duration::from_millis(http.shutdown_grace_ms),
        }
    }
}

/// Raises the soft open-file limit to the hard limit, once per process; logs the old and new
/// values at info. Returns the soft limit in force afterwards (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    static RAISED: OnceLock<Option<u64>> = OnceLock::new();
    *RAISED.get_or_init(|| {
        let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "reading the open-file limit");
                return None;
            }
        };
        if soft >= hard {
            tracing::info!(soft, hard, "open-file limit already at the hard limit");
            return Some(soft);
        }
        match rlimit::increase_nofile_limit(hard) {
            Ok(new) => {
                tracing::info!(old = soft, new, hard, "open-file limit raised");
                Some(new)
            }
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "raising the open-file limit");
                Some(soft)
            }
        }
    })
}

/// Counts events and says when to log them: at most once per `every`, with the number of
/// events since the last line.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one event at `now`; returns the count to log when a line is due.
    pub fn hit_at(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.1 += 1;
        let due =
            st.0.is_none_or(|last| now.duration_since(last) >= self.every);
        if due {
            st.0 = Some(now);
            Some(std::mem::take(&mut st.1))
        } else {
            None
        }
    }

    pub fn hit(&self) -> Option<u64> {
        self.hit_at(Instant::now())
    }
}

/// Log lines shared by every connection (an attacker must not be able to flood the log).
struct Logs {
    refused: Throttle,
    accept_errors: Throttle,
    header_timeouts: Throttle,
    idle_closed: Throttle,
    too_large: Throttle,
}

impl Logs {
    fn new() -> Self {
        let s = Duration::from_secs(1);
        Self {
            refused: Throttle::new(s),
            accept_errors: Throttle::new(s),
            header_timeouts: Throttle::new(s),
            idle_closed: Throttle::new(s),
            too_large: Throttle::new(s),
        }
    }
}

/// Whether an accept error concerns only the connection being accepted (retry at once) rather
/// than the process (out of file descriptors or memory: back off).
pub fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// The stages of the server's life, as seen by every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Stop taking requests; close connections without a request in flight.
    Draining,
    /// The grace period is over: close everything.
    Cut,
}

/// Milliseconds since the process's first connection (0 means "never").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}

fn instant_of(ms: u64) -> Instant {
    let now = now_ms();
    let now_i = Instant::now();
    if ms >= now {
        now_i + Duration::from_millis(ms - now)
    } else {
        now_i - Duration::from_millis(now - ms)
    }
}

/// What a connection is doing, written by its socket and its requests, read by its watchdog.
#[derive(Debug, Default)]
struct ConnState {
    /// Requests whose answer has not ended (0 or 1 on HTTP/1).
    in_flight: AtomicU32,
    /// When the connection last began to wait for a request (accepted, or an answer ended).
    waiting_since: AtomicU64,
    /// When the first byte of the awaited request head arrived (0: none yet).
    head_since: AtomicU64,
    /// When bytes last moved either way.
    last_io: AtomicU64,
    /// Whether an answer has ended on this connection (then waiting is keep-alive idleness).
    served: AtomicBool,
    /// Wakes the watchdog when an answer ends: its deadline may now be sooner than the one it
    /// sleeps until (a keep-alive idle timeout shorter than the header timeout).
    answered: tokio::sync::Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No complete request head in time.
    Header,
    /// Keep-alive connection with nothing moving.
    Idle,
}

impl ConnState {
    fn new() -> Arc<Self> {
        let now = now_ms();
        let s = Self::default();
        s.waiting_since.store(now, Ordering::Relaxed);
        s.last_io.store(now, Ordering::Relaxed);
        Arc::new(s)
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    fn on_read(&self) {
        let now = now_ms();
        self.last_io.store(now, Ordering::Relaxed);
        if !self.busy() {
            let _ = self
                .head_since
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.last_io.store(now_ms(), Ordering::Relaxed);
    }

    fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        RequestGuard(self.clone())
    }

    /// When this connection is due to be closed, and why (`None` while a request is in flight).
    fn deadline(&self, s: &ServeSettings) -> Option<(u64, Expiry)> {
        if self.busy() {
            return None;
        }
        let header = s.header_read_timeout.as_millis() as u64;
        let head = self.head_since.load(Ordering::Acquire);
        if head != 0 {
            return Some((head + header, Expiry::Header));
        }
        let waiting = self.waiting_since.load(Ordering::Acquire);
        if !self.served.load(Ordering::Acquire) {
            return Some((waiting + header, Expiry::Header));
        }
        let last = waiting.max(self.last_io.load(Ordering::Relaxed));
        Some((last + s.idle_timeout.as_millis() as u64, Expiry::Idle))
    }
}

/// Held while a request is in flight: from the service call to the end (or drop) of its body.
struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let st = &self.0;
        st.waiting_since.store(now_ms(), Ordering::Release);
        st.head_since.store(0, Ordering::Release);
        st.served.store(true, Ordering::Release);
        st.in_flight.fetch_sub(1, Ordering::AcqRel);
        st.answered.notify_one();
    }
}

/// The TCP stream, noting every byte that moves.
struct Watched {
    tcp: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A response body that keeps its request "in flight" until it ends or is dropped.
struct TrackedBody {
    inner: Body,
    guard: Option<RequestGuard>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as a hyper service for one connection.
#[derive(Clone)]
struct ConnService {
    router: Router,
    state: Arc<ConnState>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<hyper::Response<TrackedBody>, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let guard = self.state.begin_request();
        let router = self.router.clone();
        Box::pin(async move {
            let resp = router.oneshot(req).await?;
            Ok(resp.map(|inner| TrackedBody {
                inner,
                guard: Some(guard),
            }))
        })
    }
}

/// Counts open connections (a slot per connection task).
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let open = self.0.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("voxtrail_http_connections_open").set(open as f64);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains and returns once every
/// connection is closed (at most `shutdown_grace` later, plus the time to drop them).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let open = Arc::new(AtomicUsize::new(0));
    let logs = Arc::new(Logs::new());
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our watchdog enforces the header timeout from the first byte of a head, and idleness
    // separately; hyper's own timer would treat keep-alive idleness as a slow head.
    http.header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(settings.max_header_bytes)
        .max_header_size(settings.max_header_bytes);
    let http = Arc::new(http);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if open.load(Ordering::Acquire) >= settings.max_connections {
                        refuse(tcp);
                        metrics::counter!("voxtrail_http_connections_refused_total").increment(1);
                        if let Some(n) = logs.refused.hit() {
                            tracing::warn!(
                                refused = n,
                                max_connections = settings.max_connections,
                                "connection cap reached: new connections answered 503 and closed"
                            );
                        }
                        continue;
                    }
                    if let Err(e) = tcp.set_nodelay(true) {
                        // An answer is written as head then body; without TCP_NODELAY Nagle's
                        // algorithm holds the second write until the client's delayed ACK.
                        tracing::warn!(error = %e, "setting TCP_NODELAY");
                    }
                    let n = open.fetch_add(1, Ordering::AcqRel) + 1;
                    metrics::gauge!("voxtrail_http_connections_open").set(n as f64);
                    let guard = OpenGuard(open.clone());
                    tasks.spawn(connection(
                        tcp,
                        peer,
                        router.clone(),
                        http.clone(),
                        settings,
                        phase_rx.clone(),
                        logs.clone(),
                        guard,
                    ));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    metrics::counter!("voxtrail_http_accept_errors_total").increment(1);
                    if let Some(n) = logs.accept_errors.hit() {
                        tracing::error!(
                            error = %e,
                            errors = n,
                            open = open.load(Ordering::Relaxed),
                            "accepting connections failed; backing off"
                        );
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let open_now = open.load(Ordering::Acquire);
    tracing::info!(
        open = open_now,
        grace_ms = settings.shutdown_grace.as_millis() as u64,
        "stopped accepting; closing idle connections, draining answers in flight"
    );
    let _ = phase_tx.send(Phase::Draining);
    let grace = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            () = &mut grace => break,
        }
    }
    tracing::warn!(
        open = open.load(Ordering::Acquire),
        "shutdown grace period over: cutting the connections left"
    );
    let _ = phase_tx.send(Phase::Cut);
    tasks.shutdown().await;
}

/// Answers a connection over the cap with a fixed 503, without waiting, and closes it.
fn refuse(tcp: TcpStream) {
    // The socket is fresh: its send buffer takes the whole answer, or the client is gone.
    let _ = tcp.try_write(over_cap_answer());
    drop(tcp);
}

/// Serves one connection until it ends, expires, or shutdown closes it.
#[allow(clippy::too_many_arguments)]
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    settings: ServeSettings,
    mut phase: watch::Receiver<Phase>,
    logs: Arc<Logs>,
    _open: OpenGuard,
) {
    let state = ConnState::new();
    let io = TokioIo::new(Watched {
        tcp,
        state: state.clone(),
    });
    let service = ConnService {
        router,
        state: state.clone(),
    };
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let recheck = settings.header_read_timeout.min(settings.idle_timeout);
    let mut draining = false;
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::Cut => return,
            // Once draining, hyper closes the connection itself after the answer is flushed.
            Phase::Draining if !draining && !state.busy() => return,
            Phase::Draining if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        let due = state.deadline(&settings);
        let wake = match due {
            Some((ms, _)) => instant_of(ms),
            None => Instant::now() + recheck,
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    note_connection_error(&e, peer, &logs);
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if let Some((ms, why)) = state.deadline(&settings)
                    && now_ms() >= ms
                {
                    let (reason, throttle) = match why {
                        Expiry::Header => ("header_timeout", &logs.header_timeouts),
                        Expiry::Idle => ("idle_timeout", &logs.idle_closed),
                    };
                    metrics::counter!("voxtrail_http_connections_closed_total", "reason" => reason)
                        .increment(1);
                    if let Some(n) = throttle.hit() {
                        tracing::info!(reason, closed = n, "closing connections that sent no request in time");
                    }
                    return;
                }
            }
            () = state.answered.notified() => {}
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Logs what ended a connection with an error: an oversized head at warn (rate-limited), the
/// rest (clients going away mid-answer) at debug.
fn note_connection_error(e: &hyper::Error, peer: SocketAddr, logs: &Logs) {
    if e.is_parse_too_large() {
        metrics::counter!("voxtrail_http_connections_closed_total", "reason" => "head_too_large")
            .increment(1);
        if let Some(n) = logs.too_large.hit() {
            tracing::warn!(%peer, closed = n, "request head too large: answered 431 and closed");
        }
    } else {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_logs_once_per_period_with_the_count() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.hit_at(t0), Some(1));
        assert_eq!(t.hit_at(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.hit_at(t0 + Duration::from_millis(500)), None);
        assert_eq!(t.hit_at(t0 + Duration::from_millis(999)), None);
        assert_eq!(t.hit_at(t0 + Duration::from_millis(1000)), Some(4));
        assert_eq!(t.hit_at(t0 + Duration::from_millis(1001)), None);
        assert_eq!(t.hit_at(t0 + Duration::from_secs(5)), Some(2));
    }

    #[test]
    fn accept_errors_about_the_process_back_off() {
        use std::io::{Error, ErrorKind};
        assert!(is_connection_error(&Error::from(
            ErrorKind::ConnectionAborted
        )));
        assert!(is_connection_error(&Error::from(
            ErrorKind::ConnectionReset
        )));
        // EMFILE / ENFILE / ENOMEM are not about one connection: the loop must back off.
        for errno in [24, 23, 12] {
            assert!(!is_connection_error(&Error::from_raw_os_error(errno)));
        }
    }

    fn settings() -> ServeSettings {
        ServeSettings {
            header_read_timeout: Duration::from_millis(1000),
            idle_timeout: Duration::from_millis(5000),
            max_connections: 10,
            max_header_bytes: 65536,
            shutdown_grace: Duration::from_millis(1000),
        }
    }

    #[test]
    fn a_fresh_connection_must_send_a_head_within_the_header_timeout() {
        let s = settings();
        let st = ConnState::new();
        let accepted = st.waiting_since.load(Ordering::Relaxed);
        assert_eq!(st.deadline(&s), Some((accepted + 1000, Expiry::Header)));
        // Bytes do not push the header deadline back (a slowloris drips bytes).
        st.on_read();
        let (at, why) = st.deadline(&s).unwrap();
        assert_eq!(why, Expiry::Header);
        assert!(at <= now_ms() + 1000);
    }

    #[test]
    fn in_flight_requests_have_no_deadline_and_then_idleness_counts() {
        let s = settings();
        let st = ConnState::new();
        st.on_read();
        let guard = st.begin_request();
        assert_eq!(st.deadline(&s), None);
        // Body bytes while in flight do not start a header clock.
        st.on_read();
        assert_eq!(st.head_since.load(Ordering::Relaxed), 0);
        drop(guard);
        let (_, why) = st.deadline(&s).unwrap();
        assert_eq!(why, Expiry::Idle);
        // The first byte of the next request starts its header clock.
        st.on_read();
        assert_eq!(st.deadline(&s).unwrap().1, Expiry::Header);
    }

    #[test]
    fn the_cap_follows_the_open_file_limit() {
        let http = HttpConfig::default();
        let s = ServeSettings::new(&http, Some(1024));
        assert_eq!(s.max_connections, 1024 - FD_RESERVE as usize);
        let s = ServeSettings::new(&http, Some(1_000_000));
        assert_eq!(s.max_connections, http.max_connections as usize);
        let s = ServeSettings::new(&http, Some(10));
        assert_eq!(s.max_connections, 1);
        let s = ServeSettings::new(&http, None);
        assert_eq!(s.max_connections, http.max_connections as usize);
    }

    #[test]
    fn the_over_cap_answer_is_well_formed() {
        let text = std::str::from_utf8(over_cap_answer()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(
            body.as_bytes(),
            voxtrail_wire::error_body(
                503,
                "SERVICE UNAVAILABLE",
                "TOO MANY CONNECTIONS; RETRY SHORTLY"
            )
        );
        assert!(head.starts_with("HTTP/1.1 503 "));
    }
}
