#!/usr/bin/env python3
"""The polls baseline: a small, ordinary Python server over the same SQLite file.

Standard library only (http.server.ThreadingHTTPServer + sqlite3), one read-only SQLite
connection per thread. It answers GET /api/v2/reports_manager.php?api=chat_12&date_ini=&date_end=
with the token in the `wolkvox-token` header, looking the token up by its SHA-256 like voxtrail,
and builds the same JSON envelope from the stored `json` column, with Content-Length and
HTTP/1.1 keep-alive. No limits, no logging: it is the "straightforward" implementation.

usage: baseline_server.py DB_PATH PORT
"""

import hashlib
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DB_PATH = sys.argv[1]
PORT = int(sys.argv[2])
LOCAL = threading.local()

TOKEN_SQL = (
    "SELECT t.operation_id FROM tokens t WHERE t.hash = ? AND t.revoked_at IS NULL AND t.scope = 'report'"
)
ROWS_SQL = (
    "SELECT json FROM interactions WHERE operation_id = ? AND local_ts BETWEEN ? AND ? "
    "ORDER BY local_ts, seq"
)


def db():
    conn = getattr(LOCAL, "conn", None)
    if conn is None:
        conn = sqlite3.connect(f"file:{DB_PATH}?mode=ro", uri=True, check_same_thread=False)
        LOCAL.conn = conn
    return conn


def error_body(status, kind, msg):
    return ('{"code":"%d","error":"%s","msg":"%s","data":[]}' % (status, kind, msg)).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/api/v2/reports_manager.php":
            return self.send(404, error_body(404, "NOT_FOUND", "Not found"))
        token = self.headers.get("wolkvox-token")
        if not token:
            return self.send(401, error_body(401, "UNAUTHORIZED", "PLEASE ENTER THE WOLKVOX-TOKEN"))
        conn = db()
        found = conn.execute(TOKEN_SQL, (hashlib.sha256(token.encode()).digest(),)).fetchone()
        if found is None:
            return self.send(401, error_body(401, "UNAUTHORIZED", "INVALID TOKEN"))
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if q.get("api") != "chat_12" or not q.get("date_ini") or not q.get("date_end"):
            return self.send(400, error_body(400, "BAD_REQUEST", "Parameters are required"))
        try:
            ini, end = int(q["date_ini"]), int(q["date_end"])
        except ValueError:
            return self.send(400, error_body(400, "BAD_REQUEST", "Invalid date format"))
        rows = [r[0] for r in conn.execute(ROWS_SQL, (found[0], ini, end))]
        head = '{"code":"200","error":null,"msg":"%d records were found","data":[' % len(rows)
        body = b"".join((head.encode(), b",".join(rows), b"]}"))
        self.send(200, body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    srv = Server(("127.0.0.1", PORT), Handler)
    print(f"baseline listening on http://127.0.0.1:{PORT}", flush=True)
    srv.serve_forever()
