#!/usr/bin/env python3
"""Hostile peers against one running voxtrail server (loopback only), for bench/slow_peers.sh.

Opens N slowloris connections (a partial request head, then one more header line each second),
N idle connections (connect, send nothing) and N half-sent large heads (400 KB of one header,
never finished); measures the server's RSS and open sockets, and the latency of another
client's polls while they are open; waits for the server's timeouts; then closes everything
and measures again. Prints one JSON object. Bounded in count and time; stops by itself.
"""

import argparse
import http.client
import json
import os
import resource
import socket
import threading
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def server_sockets(pid):
    """Sockets the server holds (the runs report the difference with the count at start)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


class Peer:
    def __init__(self, kind, sock, payload=b""):
        self.kind = kind
        self.sock = sock
        self.payload = memoryview(payload)
        self.sent = 0
        self.closed = False

    def pump(self):
        """Sends what it can of its payload; notices the server closing the connection."""
        if self.closed:
            return
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.closed = True
                    return
        except BlockingIOError:
            pass
        except OSError:
            self.closed = True
            return
        if self.sent < len(self.payload):
            try:
                self.sent += self.sock.send(self.payload[self.sent : self.sent + 65536])
            except BlockingIOError:
                pass
            except OSError:
                self.closed = True

    def drip(self):
        if self.closed:
            return
        try:
            self.sock.send(b"X-Drip: 1\r\n")
        except BlockingIOError:
            pass
        except OSError:
            self.closed = True


def connect(port):
    s = socket.socket()
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


def percentile(sorted_ms, p):
    if not sorted_ms:
        return None
    k = min(len(sorted_ms) - 1, max(0, int(round(p / 100 * (len(sorted_ms) - 1)))))
    return round(sorted_ms[k], 2)


def polls(port, path, token, count, deadline, out):
    lat, fails, bodies_ok = [], 0, 0
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        t = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path, headers={"wolkvox-token": token})
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status == 200 and b'"bench-row"' in body:
                bodies_ok += 1
                lat.append((time.monotonic() - t) * 1000)
            else:
                fails += 1
        except OSError:
            fails += 1
        time.sleep(0.02)
    lat.sort()
    out.update(
        polls_ok=bodies_ok,
        polls_failed=fails,
        poll_p50_ms=percentile(lat, 50),
        poll_p99_ms=percentile(lat, 99),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--kind", choices=["slowloris", "idle", "bighead"], required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--head-bytes", type=int, default=400 * 1024)
    ap.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the server's timeouts")
    ap.add_argument("--polls", type=int, default=200)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    res = {"kind": a.kind, "count": a.count, "rss_start_kb": rss_kb(a.pid)}
    base = server_sockets(a.pid)
    peers = []
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * a.head_bytes
    connect_errors = 0
    for _ in range(a.count):
        try:
            s = connect(a.port)
        except OSError:
            connect_errors += 1
            continue
        if a.kind == "slowloris":
            p = Peer("slowloris", s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        elif a.kind == "bighead":
            p = Peer("bighead", s, big)
        else:
            p = Peer("idle", s)
        peers.append(p)
        p.pump()
    res["connect_errors"] = connect_errors

    def pump_for(seconds):
        end = time.monotonic() + seconds
        last_drip = 0.0
        while time.monotonic() < end:
            for p in peers:
                p.pump()
            if a.kind == "slowloris" and time.monotonic() - last_drip >= 1.0:
                last_drip = time.monotonic()
                for p in peers:
                    p.drip()
            time.sleep(0.05)

    pump_for(2.0)
    res["rss_open_kb"] = rss_kb(a.pid)
    res["server_conns_open"] = server_sockets(a.pid) - base
    out = {}
    t = threading.Thread(
        target=polls, args=(a.port, a.path, a.token, a.polls, time.monotonic() + 60, out)
    )
    t.start()
    while t.is_alive():
        pump_for(0.5)
    res.update(out)
    pump_for(a.wait)
    res["rss_after_wait_kb"] = rss_kb(a.pid)
    res["server_conns_after_wait"] = server_sockets(a.pid) - base
    res["closed_by_server"] = sum(p.closed for p in peers)
    for p in peers:
        p.sock.close()
    time.sleep(2.0)
    res["rss_after_close_kb"] = rss_kb(a.pid)
    res["server_conns_after_close"] = server_sockets(a.pid) - base
    print(json.dumps(res))


if __name__ == "__main__":
    main()
