#!/usr/bin/env python3
"""A local fake of the hosted chat_12 API for bench/mirror.sh: the upstream a mirror copies from.

Usage: mirror_fake.py ROWS.ndjson TOKEN PORT

Holds the rows of ROWS.ndjson (one report object per line, as voxtrail stores them) in memory,
sorted by `date` (stable), and answers `GET /api/v2/reports_manager.php?api=chat_12&date_ini=…
&date_end=…` with the rows of that window — prepared bytes joined, never compressed, so the
upstream costs the machine as little as possible (the real upstream is another machine). It
speaks like the hosted API: `code` as a number, `404 "Validate dates entered"` for an empty
window, `403 PLEASE VALIDATE TOKEN` for a wrong token, `400` above 60,000 rows, and it refuses a
second request in flight (`403 … SIMULTANEOUS REQUESTS …`). On exit (SIGTERM) it prints the
number of requests and the most ever in flight at once on stderr.
"""

import bisect
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LIMIT = 60000


def load(path):
    rows = []
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if not line:
                continue
            d = json.loads(line)["date"]  # YYYY-mm-dd HH:ii:ss
            key = int(d[0:4] + d[5:7] + d[8:10] + d[11:13] + d[14:16] + d[17:19])
            rows.append((key, line))
    rows.sort(key=lambda r: r[0])
    return [k for k, _ in rows], [b for _, b in rows]


KEYS, BODIES = load(sys.argv[1])
TOKEN = sys.argv[2]
PORT = int(sys.argv[3])
LOCK = threading.Lock()
STATE = {"in_flight": 0, "max_in_flight": 0, "requests": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def refuse(self, status, error, msg):
        self.send(status, json.dumps(
            {"code": status, "error": error, "msg": msg, "data": []}).encode())

    def do_GET(self):
        with LOCK:
            STATE["requests"] += 1
            STATE["in_flight"] += 1
            STATE["max_in_flight"] = max(STATE["max_in_flight"], STATE["in_flight"])
            busy = STATE["in_flight"] > 1
        try:
            self.answer(busy)
        finally:
            with LOCK:
                STATE["in_flight"] -= 1

    def answer(self, busy):
        url = urlsplit(self.path)
        if url.path.rstrip("/") != "/api/v2/reports_manager.php":
            return self.refuse(404, "NOT FOUND", "NOT FOUND")
        if self.headers.get("wolkvox-token", "") != TOKEN:
            return self.refuse(403, "FORBIDDEN", "PLEASE VALIDATE TOKEN")
        if busy:
            return self.refuse(403, "FORBIDDEN",
                               "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (1)")
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            ini, end = int(q["date_ini"]), int(q["date_end"])
        except (KeyError, ValueError):
            return self.refuse(400, "BAD REQUEST", "SOME PARAMETERS ARE REQUIRED")
        lo, hi = bisect.bisect_left(KEYS, ini), bisect.bisect_right(KEYS, end)
        n = hi - lo
        if n == 0:
            return self.refuse(404, "NOT FOUND", "Validate dates entered")
        if n > LIMIT:
            return self.refuse(400, "BAD REQUEST",
                               f"THE RESULT HAS {n} RECORDS, ABOVE THE LIMIT OF 60000")
        head = ('{"code":200,"error":null,"msg":"%d records were found","data":[' % n).encode()
        self.send(200, head + b",".join(BODIES[lo:hi]) + b"]}")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True

    def bye(*_):
        print(f"requests={STATE['requests']} max_in_flight={STATE['max_in_flight']}",
              file=sys.stderr, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, bye)
    print(f"listening on 127.0.0.1:{PORT} with {len(KEYS)} rows", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
