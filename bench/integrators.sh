#!/usr/bin/env bash
# The integrator additions' speed (SPEC §10, issue 12), each figure next to a baseline measured
# by this script in the same run:
#   1. polls with quota headers, ETag and the consumer audit (the binary under test) against the
#      same polls on the build before the integrator additions (VOXTRAIL_BIN_BEFORE, commit
#      646039a): random 5-minute windows of the shared 1,000,000-row database, 32 and 1
#      connections (loadgen), each binary on its own copy, alternating; target >= 0.9x;
#   2. conditional re-polls (If-None-Match, 304) against 200 polls of the same fixed windows,
#      same server, same run (loadgen --windows, --if-none-match); target >= 2x;
#   3. `hours` over a 31-day window of a ~220,000-row operation (server time from curl); baseline:
#      the sqlite3 library counting the same rows per hour over the same index, no hashes;
#      target <= 100 ms;
#   4. the feed read end to end (every page of 10,000 rows, one keep-alive client, the cursor
#      passed back) in MB/s of answer bytes; baseline: the same rows as §2 reports, one day per
#      request, same client; target >= 200 MB/s.
#
# Environment: VOXTRAIL_BIN_BEFORE (required: a release build of 646039a), VOXTRAIL_BIN (the
# binary under test; else built), LOADGEN_BIN (else built), ROUNDS (3), DURATION (s per poll
# run, 8), WINDOWS (fixed windows per operation for the re-polls, 20), REPS (hours/feed
# repetitions, 5), BIG_COUNT (rows of the 31-day operation, 220000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BEFORE=${VOXTRAIL_BIN_BEFORE:?set VOXTRAIL_BIN_BEFORE to a release build of 646039a (before the integrator additions)}
VOXTRAIL=$(voxtrail_bin)
AFTER=$VOXTRAIL
LOADGEN=$(loadgen_bin)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
WINDOWS=${WINDOWS:-20}
REPS=${REPS:-5}
BIG_COUNT=${BIG_COUNT:-220000}
command -v curl >/dev/null || { log "curl is required"; exit 1; }
command -v sqlite3 >/dev/null || { log "sqlite3 is required"; exit 1; }

# The shared database: each binary serves its own VACUUMed copy (the after copy migrated first;
# lib.sh, ensure_before_after_dbs).
ensure_before_after_dbs "$BEFORE" "$AFTER"

# The 31-day operation: BIG_COUNT rows over October 2026 (as bench/console.sh seeds it).
BIG_DB="$OUT_DIR/integrators.db"
BIG_KEY="count=$BIG_COUNT days=31 until=20261031235959 seed=1 gen=$(seed_fingerprint)"
if [ ! -f "$BIG_DB" ] || [ "$(cat "$OUT_DIR/integrators.key" 2>/dev/null)" != "$BIG_KEY" ]; then
    log "seeding $BIG_DB: $BIG_COUNT rows over 31 days"
    rm -f "$BIG_DB" "$BIG_DB-wal" "$BIG_DB-shm" "$OUT_DIR/integrators.key" "$OUT_DIR/integrators.token"
    "$AFTER" --database "sqlite://$BIG_DB" operation create big >/dev/null
    "$AFTER" --database "sqlite://$BIG_DB" seed --operation big --count "$BIG_COUNT" --days 31 \
        --until 20261031235959 --seed 1 2>&1 | tail -n 1 >&2
    "$AFTER" --database "sqlite://$BIG_DB" token create --operation big --description bench \
        --daily-limit 100000000 2>/dev/null >"$OUT_DIR/integrators.token"
    printf '%s\n' "$BIG_KEY" >"$OUT_DIR/integrators.key"
fi
"$AFTER" --database "sqlite://$BIG_DB" migrate >&2
BIG_TOKEN=$(cat "$OUT_DIR/integrators.token")
cat "$BIG_DB" >/dev/null

RES="$OUT_DIR/integrators.results.jsonl"
: >"$RES"

# polls LABEL BINARY DATABASE ROUND: 32 and 1 connections of random 5-minute windows.
polls() {
    local label=$1 bin=$2 db=$3 round=$4 port pid conns
    port=$(free_port)
    start_bg "$OUT_DIR/integrators.$label.log" "$bin" --database "sqlite://$db" serve --listen "127.0.0.1:$port"
    pid=$BG_PID
    wait_port "$port" "$pid"
    for conns in 32 1; do
        # The server's CPU time per answer too: less noisy than answers/s on a shared machine (it
        # does not depend on the share of the cores the server gets); warm-up included.
        t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        out=$(run_fg "$LOADGEN" --addr "127.0.0.1:$port" --tokens "$POLLS_TOKENS" --connections "$conns" \
            --duration "$DURATION" --warmup 2 --from "$POLLS_FROM" --to "$POLLS_UNTIL" --window-secs 300 \
            --threads 1 --seed "$round" --label "$label")
        t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        python3 -c 'import json,os,sys; d=json.loads(sys.argv[1]); d["cpu_us_per_answer"]=int(sys.argv[2])/os.sysconf("SC_CLK_TCK")*1e6/max(1,d["answers"]); print(json.dumps(d))' \
            "$out" "$((t1 - t0))" >>"$RES"
    done
    stop_bg "$pid"
}

log "1. polls: before (VOXTRAIL_BIN_BEFORE) and after, alternating, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        polls before "$BEFORE" "$BEFORE_DB" "$round"
        polls after "$AFTER" "$AFTER_DB" "$round"
    else
        polls after "$AFTER" "$AFTER_DB" "$round"
        polls before "$BEFORE" "$BEFORE_DB" "$round"
    fi
done

log "2. re-polls: 200 polls and 304 re-polls of $WINDOWS fixed windows per operation, same server"
port=$(free_port)
start_bg "$OUT_DIR/integrators.repoll.log" "$AFTER" --database "sqlite://$AFTER_DB" serve --listen "127.0.0.1:$port"
pid=$BG_PID
wait_port "$port" "$pid"
for round in $(seq 1 "$ROUNDS"); do
    for mode in plain conditional; do
        flag=()
        [ "$mode" = conditional ] && flag=(--if-none-match)
        t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        out=$(run_fg "$LOADGEN" --addr "127.0.0.1:$port" --tokens "$POLLS_TOKENS" --connections 32 \
            --duration "$DURATION" --warmup 2 --from "$POLLS_FROM" --to "$POLLS_UNTIL" --window-secs 300 \
            --windows "$WINDOWS" --threads 1 --seed "$round" --label "repoll-$mode" "${flag[@]}")
        t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        python3 -c 'import json,os,sys; d=json.loads(sys.argv[1]); d["cpu_us_per_answer"]=int(sys.argv[2])/os.sysconf("SC_CLK_TCK")*1e6/max(1,d["answers"]); print(json.dumps(d))' \
            "$out" "$((t1 - t0))" >>"$RES"
    done
done
stop_bg "$pid"

log "3. hours over 31 days and 4. the feed, on $BIG_COUNT rows"
port=$(free_port)
start_bg "$OUT_DIR/integrators.big.log" "$AFTER" --database "sqlite://$BIG_DB" serve --listen "127.0.0.1:$port"
pid=$BG_PID
wait_port "$port" "$pid"
# The server's word-search indexer indexes seeded rows after it starts (docs/api.md, "The
# console"): measure once it has caught up, not while it competes for the 2 cores.
behind() { sqlite3 "$BIG_DB" "SELECT (SELECT MAX(seq) FROM interactions) - (SELECT indexed_upto FROM console_fts_state)"; }
while [ "$(behind)" != "0" ]; do sleep 0.5; done
python3 - "$port" "$BIG_TOKEN" "$BIG_DB" "$REPS" >>"$RES" <<'PY'
import http.client, json, re, sqlite3, sys, time
port, token, db, reps = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
INI, END = "20261001000000", "20261031235959"
conn = http.client.HTTPConnection("127.0.0.1", port)

def get(path):
    conn.request("GET", path, headers={"wolkvox-token": token})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
    return body

def out(**kw):
    print(json.dumps(kw), flush=True)

# 3. hours: the server's answer (keep-alive client), and the same index counted per hour by
# the sqlite3 library (no hashes, no HTTP).
for _ in range(reps):
    t0 = time.perf_counter()
    body = get(f"/api/v2/voxtrail/chat_12/hours?date_ini={INI}&date_end={END}")
    t1 = time.perf_counter()
    data = json.loads(body)["data"]
    out(hours=True, seconds=t1 - t0, hours_n=len(data), rows=sum(int(h["records"]) for h in data),
        bytes=len(body))
lite = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
op = lite.execute("SELECT id FROM operations WHERE name = 'big'").fetchone()[0]
for _ in range(reps):
    t0 = time.perf_counter()
    got = lite.execute("SELECT local_ts / 10000, COUNT(*) FROM interactions WHERE operation_id = ?"
                       " AND local_ts BETWEEN ? AND ? GROUP BY 1", (op, int(INI), int(END))).fetchall()
    t1 = time.perf_counter()
    out(hours_baseline=True, seconds=t1 - t0, hours_n=len(got), rows=sum(n for _, n in got))

# 4. the feed, every page of 10,000 rows, then the same rows as one report per day.
cursor_re = re.compile(rb'"cursor":"([0-9.]+)"\}$')
for _ in range(reps):
    t0 = time.perf_counter()
    total, rows, cursor = 0, 0, None
    while True:
        body = get("/api/v2/voxtrail/chat_12/feed?limit=10000" + (f"&after={cursor}" if cursor else ""))
        total += len(body)
        n = int(re.match(rb'\{"code":"200","error":null,"msg":"(\d+) records', body).group(1))
        rows += n
        cursor = cursor_re.search(body[-64:]).group(1).decode()
        if n == 0:
            break
    t1 = time.perf_counter()
    out(feed=True, seconds=t1 - t0, bytes=total, rows=rows)
    t0 = time.perf_counter()
    total, rows = 0, 0
    for day in range(1, 32):
        body = get(f"/api/v2/reports_manager.php?api=chat_12&date_ini=202610{day:02d}000000"
                   f"&date_end=202610{day:02d}235959")
        total += len(body)
        rows += int(re.match(rb'\{"code":"200","error":null,"msg":"(\d+) records', body).group(1))
    t1 = time.perf_counter()
    out(feed_baseline=True, seconds=t1 - t0, bytes=total, rows=rows)
PY
stop_bg "$pid"

python3 - "$RES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def best(label, conns=32):
    runs = [r for r in rows if r.get("label") == label and r.get("connections") == conns]
    bad = [r for r in runs if r["errors"]]
    if bad:
        sys.exit(f"{label}: errors {bad[0]['error_kinds']}")
    return max(runs, key=lambda r: r["answers_per_s"])
def ok(cond):
    return "meets target" if cond else "MISSES target"
print("integrator additions: best of the rounds (figure | baseline, same run | ratio | target)")
for c in (32, 1):
    b, a = best("before", c), best("after", c)
    r = a["answers_per_s"] / b["answers_per_s"]
    print(f"1. polls {c:>2} conn, answers/s: after {a['answers_per_s']:,.0f} (p99 {a['p99_ms']:.2f} ms)"
          f" | before {b['answers_per_s']:,.0f} (p99 {b['p99_ms']:.2f} ms) | {r:.2f}x | >= 0.9x: {ok(r >= 0.9)}")
    cb = min(x["cpu_us_per_answer"] for x in rows if x.get("label") == "before" and x.get("connections") == c)
    ca = min(x["cpu_us_per_answer"] for x in rows if x.get("label") == "after" and x.get("connections") == c)
    print(f"   server CPU per answer (best round, warm-up included): after {ca:.0f} us | before {cb:.0f} us"
          f" | {cb/ca:.2f}x the answers per CPU second")
p, c = best("repoll-plain"), best("repoll-conditional")
if c["not_modified"] < 0.9 * c["answers"]:
    sys.exit(f"re-polls: only {c['not_modified']} of {c['answers']} answers were 304")
r = c["answers_per_s"] / p["answers_per_s"]
print(f"2. re-polls, 32 conn, answers/s: 304 {c['answers_per_s']:,.0f} ({c['not_modified']} of {c['answers']} were 304,"
      f" p50 {c['p50_ms']:.2f} ms) | 200 {p['answers_per_s']:,.0f} ({p['mean_bytes']:,} bytes, p50 {p['p50_ms']:.2f} ms)"
      f" | {r:.2f}x | >= 2x: {ok(r >= 2)}")
cp = min(x["cpu_us_per_answer"] for x in rows if x.get("label") == "repoll-plain")
cc = min(x["cpu_us_per_answer"] for x in rows if x.get("label") == "repoll-conditional")
print(f"   server CPU per answer (best round, warm-up included): 304 {cc:.0f} us | 200 {cp:.0f} us"
      f" | {cp/cc:.2f}x the answers per CPU second")
h = [r for r in rows if r.get("hours")]
hb = [r for r in rows if r.get("hours_baseline")]
assert h[0]["rows"] == hb[0]["rows"] and h[0]["hours_n"] == hb[0]["hours_n"], (h[0], hb[0])
hs = sorted(r["seconds"] for r in h)
bs = sorted(r["seconds"] for r in hb)
print(f"3. hours, 31 days, {h[0]['rows']:,} rows, {h[0]['hours_n']} hours: median {statistics.median(hs)*1e3:.1f} ms,"
      f" best {hs[0]*1e3:.1f} ms | sqlite3 count per hour: median {statistics.median(bs)*1e3:.1f} ms"
      f" | {statistics.median(hs)/statistics.median(bs):.2f}x the time | <= 100 ms: {ok(statistics.median(hs) <= 0.1)}")
f = [r for r in rows if r.get("feed")]
fb = [r for r in rows if r.get("feed_baseline")]
assert f[0]["rows"] == fb[0]["rows"], (f[0], fb[0])
fm = max(r["bytes"] / r["seconds"] / 1e6 for r in f)
bm = max(r["bytes"] / r["seconds"] / 1e6 for r in fb)
fmed = statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in f)
print(f"4. feed, {f[0]['rows']:,} rows ({f[0]['bytes']/1e6:.0f} MB) in pages of 10,000: best {fm:,.0f} MB/s,"
      f" median {fmed:,.0f} MB/s | reports, one day each: {bm:,.0f} MB/s | {fm/bm:.2f}x | >= 200 MB/s: {ok(fmed >= 200)}")
PY
machine_line
