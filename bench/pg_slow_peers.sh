#!/usr/bin/env bash
# One tenant's slow peers against another tenant's polls, on PostgreSQL (docs/adr/0004-lock-keeper.md).
#
# For the binary under test ($VOXTRAIL_BIN, else built) and, when $VOXTRAIL_BIN_BEFORE is set,
# a baseline binary, each on the same freshly seeded database:
# 1. polls answers/s without slow peers: loadgen, random 5-minute windows, $CONNS keep-alive
#    connections, $DURATION s (as bench/pg.sh), $ROUNDS rounds alternating the binaries;
# 2. with 16 slow readers (8 report tokens x 2, each stops reading a ~25 MB answer after its
#    head) and 16 stalled uploads (8 ingestion tokens x 2, each sends 1 byte of a 100 KB body)
#    of operation `slow` open, another operation's sequential polls for $PEERS_SECS s (at least
#    $MIN_POLLS of them, each bounded by 40 s): p50 / p99 / max latency and status counts.
#
# Loopback only; every server and client started here stops by itself or at exit.
# Data: op01…op$OPS × $COUNT rows over 7 days (as pg.sh) plus `slow`: $BIG_ROWS rows in one day,
# in a PostgreSQL database `voxtrail_slow_peers` (dropped and re-created each run) on
# $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
# Environment: VOXTRAIL_BIN, VOXTRAIL_BIN_BEFORE, LOADGEN_BIN (else built), OPS (4), COUNT
# (50000), BIG_ROWS (10000), DURATION (10), WARMUP (2), CONNS (32), ROUNDS (2), PEERS_SECS (10),
# MIN_POLLS (3), POOL_SIZE (16). Requirements: cargo, python3, psql.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

OPS=${OPS:-4}
COUNT=${COUNT:-50000}
BIG_ROWS=${BIG_ROWS:-10000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-2}
PEERS_SECS=${PEERS_SECS:-10}
MIN_POLLS=${MIN_POLLS:-3}
POOL_SIZE=${POOL_SIZE:-16}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_DB=voxtrail_slow_peers
PG_URL="${PG_ADMIN_URL%/*}/$PG_DB?pool_size=$POOL_SIZE"
FROM=20261001000000
UNTIL=20261008000000

VOXTRAIL=$(voxtrail_bin)
LOADGEN=$(loadgen_bin)
BEFORE=${VOXTRAIL_BIN_BEFORE:-}
RES="$OUT_DIR/pg_slow_peers.results.jsonl"
TOKENS="$OUT_DIR/pg_slow_peers.tokens"
: >"$RES"

psql -q -d "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB"
log "seeding PostgreSQL: $OPS x $COUNT rows, and $BIG_ROWS rows of the slow tenant"
: >"$TOKENS"
for i in $(seq 1 "$OPS"); do
    op=$(printf 'op%02d' "$i")
    "$VOXTRAIL" --database "$PG_URL" operation create "$op" >/dev/null
    "$VOXTRAIL" --database "$PG_URL" seed --operation "$op" --count "$COUNT" --days 7 \
        --until "$UNTIL" --seed 42 2>&1 | tail -n 1 >&2
    for _ in 1 2 3 4; do
        printf '%s %s\n' "$op" "$("$VOXTRAIL" --database "$PG_URL" token create --operation "$op" \
            --daily-limit 100000000 2>/dev/null)" >>"$TOKENS"
    done
done
"$VOXTRAIL" --database "$PG_URL" operation create slow >/dev/null
"$VOXTRAIL" --database "$PG_URL" seed --operation slow --count "$BIG_ROWS" --days 1 \
    --until 20261001235959 --seed 42 2>&1 | tail -n 1 >&2
SLOW_READERS=()
SLOW_WRITERS=()
for _ in $(seq 1 8); do
    SLOW_READERS+=("$("$VOXTRAIL" --database "$PG_URL" token create --operation slow --daily-limit 100000000 2>/dev/null)")
    SLOW_WRITERS+=("$("$VOXTRAIL" --database "$PG_URL" token create --operation slow --scope ingest 2>/dev/null)")
done
psql -q -d "${PG_ADMIN_URL%/*}/$PG_DB" -c "VACUUM (ANALYZE) interactions"
VICTIM=$(awk '$1 == "op01" {print $2; exit}' "$TOKENS")

# slow_peers LABEL PORT: opens the slow peers, polls as the victim, prints one JSON line.
slow_peers() {
    timeout $((PEERS_SECS + MIN_POLLS * 40 + 60)) python3 - "$1" "$2" "$VICTIM" "$PEERS_SECS" "$MIN_POLLS" \
        "${SLOW_READERS[*]}" "${SLOW_WRITERS[*]}" <<'PY'
import json, random, socket, sys, time, urllib.error, urllib.request
label, port, victim, secs, min_polls = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
readers, writers = sys.argv[6].split(), sys.argv[7].split()
addr = ("127.0.0.1", port)
held, reader_status = [], {}
for t in readers:
    for _ in range(2):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(40)
        s.connect(addr)
        s.sendall((f"GET /api/v2/reports_manager.php?api=chat_12&date_ini=20261001000000&date_end=20261001235959 "
                   f"HTTP/1.1\r\nHost: x\r\nwolkvox-token: {t}\r\n\r\n").encode())
        try:
            head = s.recv(1024).split(b" ", 2)[1].decode()
        except (OSError, IndexError):
            head = "none"
        reader_status[head] = reader_status.get(head, 0) + 1
        held.append(s)  # never read again
for t in writers:
    for _ in range(2):
        s = socket.create_connection(addr)
        s.sendall((f"POST /api/v2/interactions HTTP/1.1\r\nHost: x\r\nwolkvox-token: {t}\r\n"
                   f"Content-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{{").encode())
        held.append(s)
time.sleep(0.5)
rng = random.Random(7)
lat, status = [], {}
start = time.monotonic()
while time.monotonic() - start < secs or len(lat) < min_polls:
    m = rng.randrange(0, 7 * 24 * 60 - 5)
    ini = time.strftime("%Y%m%d%H%M%S", time.gmtime(1790812800 + m * 60))
    end = time.strftime("%Y%m%d%H%M%S", time.gmtime(1790812800 + m * 60 + 299))
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/reports_manager.php?api=chat_12&date_ini={ini}&date_end={end}",
                                 headers={"wolkvox-token": victim})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            r.read()
            code = str(r.status)
    except urllib.error.HTTPError as e:
        e.read()
        code = str(e.code)
    except OSError:
        code = "timeout"
    lat.append((time.monotonic() - t0) * 1000)
    status[code] = status.get(code, 0) + 1
for s in held:
    s.close()
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
print(json.dumps({"label": label, "kind": "slow_peers", "polls": len(lat), "p50_ms": pct(50), "p99_ms": pct(99),
                  "max_ms": lat[-1], "statuses": status, "slow_readers": reader_status}))
PY
}

# measure LABEL BINARY ROUND
measure() {
    local label=$1 bin=$2 round=$3 port spid
    port=$(free_port)
    start_bg "$OUT_DIR/pg_slow_peers.$label.serve.log" "$bin" --database "$PG_URL" serve --listen "127.0.0.1:$port"
    spid=$BG_PID
    wait_port "$port" "$spid"
    run_fg "$LOADGEN" --addr "127.0.0.1:$port" --tokens "$TOKENS" --connections "$CONNS" \
        --duration "$DURATION" --warmup "$WARMUP" --from "$FROM" --to "$UNTIL" --window-secs 300 \
        --threads 1 --seed 7 --label "$label" >>"$RES"
    if [ "$round" = 1 ]; then
        slow_peers "$label" "$port" >>"$RES"
    fi
    stop_bg "$spid"
}

for round in $(seq 1 "$ROUNDS"); do
    measure after "$VOXTRAIL" "$round"
    if [ -n "$BEFORE" ]; then
        measure before "$BEFORE" "$round"
    fi
done

python3 - "$RES" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("Another tenant's polls while one tenant holds 16 slow readers and 16 stalled uploads (PostgreSQL)")
print(f"{'binary':<8}{'polls':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}  statuses / slow readers' statuses")
for r in rows:
    if r.get("kind") == "slow_peers":
        print(f"{r['label']:<8}{r['polls']:>7}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['max_ms']:>10.1f}  {r['statuses']} / {r['slow_readers']}")
print()
print("Polls without slow peers (answers/s, loadgen, each round)")
tp = {}
for r in rows:
    if "answers_per_s" in r:
        tp.setdefault(r["label"], []).append(r["answers_per_s"])
        print(f"{r['label']:<8} {r['answers_per_s']:>9.1f} answers/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  errors {r['errors']}")
if "before" in tp and "after" in tp:
    a, b = max(tp["after"]), max(tp["before"])
    print(f"best after / best before: {a / b:.3f}")
PY
machine_line
