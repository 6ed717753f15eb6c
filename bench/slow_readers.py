#!/usr/bin/env python3
"""Slow readers vs another tenant (bench/slow_readers.sh).

Opens N connections to a voxtrail server on 127.0.0.1, each asking (with one token whose
concurrency limit the server raised) for a large answer, and reads each at ~2 KB/s through a
4 KB receive buffer. Meanwhile another tenant polls random 5-minute windows, one after another,
each with a token of another operation on a fresh connection. Prints one JSON line: the polls'
p50/p99/max latency in ms, how many answered 200, how many timed out, and how many slow
readers had received bytes. Loopback only; stops by itself after the warm-up + duration.
"""
import json, random, selectors, socket, sys, threading, time, http.client

addr, port = sys.argv[1], int(sys.argv[2])
assert addr in ("127.0.0.1", "localhost"), "loopback only"
slow_token, big_target = sys.argv[3], sys.argv[4]
other_tokens = sys.argv[5].split(",")
n, warmup, duration, poll_timeout = int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9])
frm, until = sys.argv[10], sys.argv[11]

socks = []
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((addr, port))
    s.sendall(f"GET {big_target} HTTP/1.1\r\nHost: {addr}\r\nwolkvox-token: {slow_token}\r\n\r\n".encode())
    s.setblocking(False)
    socks.append(s)
got = [0] * n
stop = threading.Event()

def slow_read():
    while not stop.is_set():
        for i, s in enumerate(socks):
            try:
                b = s.recv(1024)
                got[i] += len(b)
            except BlockingIOError:
                pass
            except OSError:
                pass
        stop.wait(0.5)

reader = threading.Thread(target=slow_read, daemon=True)
reader.start()
time.sleep(warmup)

rng = random.Random(7)
def ts(t):
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(t))
t0 = time.mktime(time.strptime(frm, "%Y%m%d%H%M%S")) - time.timezone
t1 = time.mktime(time.strptime(until, "%Y%m%d%H%M%S")) - time.timezone
lat, ok, timeouts, errors = [], 0, 0, 0
end = time.monotonic() + duration
while time.monotonic() < end:
    ini = rng.randrange(int(t0), int(t1) - 300)
    path = f"/api/v2/reports_manager.php?api=chat_12&date_ini={ts(ini)}&date_end={ts(ini + 299)}"
    start = time.monotonic()
    try:
        c = http.client.HTTPConnection(addr, port, timeout=poll_timeout)
        c.request("GET", path, headers={"wolkvox-token": rng.choice(other_tokens)})
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status == 200 and body.startswith(b'{"code":"200"'):
            ok += 1
        else:
            errors += 1
        lat.append((time.monotonic() - start) * 1000)
    except (socket.timeout, TimeoutError):
        timeouts += 1
        lat.append((time.monotonic() - start) * 1000)
        if timeouts >= 2:
            break
    except OSError:
        errors += 1
        lat.append((time.monotonic() - start) * 1000)
stop.set()
reader.join()
heads = sum(1 for g in got if g > 0)
for s in socks:
    s.close()
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print(json.dumps({"slow_readers": n, "slow_readers_served": heads, "polls": len(lat), "ok": ok,
                  "timeouts": timeouts, "errors": errors, "poll_timeout_s": poll_timeout,
                  "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat[-1] if lat else float("nan")}))
