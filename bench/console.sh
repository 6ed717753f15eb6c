#!/usr/bin/env bash
# Console: a ~220,000-row operation over 31 days (`voxtrail seed`), then, through the real
# server: the overview of the 31 days (server time, from the request log line), word searches
# on the interactions page (p50/p95), and the size of each page. Also the seed's rows/s: the seed
# does not index for word search; the server's indexer does after it starts, so searches are
# timed twice, at once (while the indexer catches up: unindexed rows are scanned) and once the
# watermark has reached the last row (the time to catch up is printed; needs `sqlite3`).
#
# Environment: VOXTRAIL_BIN (else built), COUNT (default 220000), SEARCHES (default 40).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-220000}
SEARCHES=${SEARCHES:-40}
VOXTRAIL=$(voxtrail_bin)
DB="$OUT_DIR/console.db"
rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock"
V() { "$VOXTRAIL" --database "sqlite://$DB" "$@"; }

V operation create bench --timezone America/Bogota >/dev/null
t0=$EPOCHREALTIME
run_fg "$VOXTRAIL" --database "sqlite://$DB" seed --operation bench --count "$COUNT" --days 31 \
    --until 20261031235959 --seed 1 2>"$OUT_DIR/console.seed.log"
t1=$EPOCHREALTIME
TOKEN=$(V token create --operation bench --scope console 2>/dev/null)

PORT=$(free_port)
start_bg "$OUT_DIR/console.server.log" "$VOXTRAIL" --database "sqlite://$DB" serve --listen "127.0.0.1:$PORT"
SERVER=$BG_PID
wait_port "$PORT" "$SERVER"
BASE="http://127.0.0.1:$PORT"
COOKIE=$(curl -s -o /dev/null -D - -H "Origin: $BASE" --data-urlencode "token=$TOKEN" "$BASE/console/login" \
    | awk -F'[ ;]' 'tolower($1)=="set-cookie:" {print $2}')
[ -n "$COOKIE" ] || { log "sign-in failed"; exit 1; }

# time_total of one GET, in ms, and its size.
get() { curl -s -o /dev/null -w '%{time_total} %{size_download}\n' -H "Cookie: $COOKIE" "$BASE$1"; }

python3 - "$COUNT" "$t0" "$t1" <<'PY'
import sys
n, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"seed: {n} rows over 31 days in {t1-t0:.2f} s, {n/(t1-t0):,.0f} rows/s")
PY
t_up=$EPOCHREALTIME
WORDS=(factura pedido envío garantía titularidad devolución diagnóstico radicado invoice refund shipping installment)
searches() {
    for i in $(seq 1 "$SEARCHES"); do
        w=${WORDS[$((i % ${#WORDS[@]}))]}
        get "/console/interactions?from=2026-10-01&to=2026-10-31&q=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$w")"
    done
}
SR_EARLY=$(searches)
behind() { sqlite3 "$DB" "SELECT (SELECT MAX(seq) FROM interactions) - (SELECT indexed_upto FROM console_fts_state)"; }
while [ "$(behind)" != "0" ]; do sleep 0.2; done
t_caught=$EPOCHREALTIME
python3 -c "import sys; print(f'indexer: {sys.argv[1]} rows indexed {float(sys.argv[3])-float(sys.argv[2]):.1f} s after the server started')" "$COUNT" "$t_up" "$t_caught"
OV=$(for _ in 1 2 3 4 5; do get "/console/?from=2026-10-01&to=2026-10-31"; done)
SR=$(searches)
SIZES=$(for p in "/console/login" "/console/?from=2026-10-01&to=2026-10-31" \
    "/console/interactions?from=2026-10-01&to=2026-10-31" "/console/tokens"; do
    printf '%s %s\n' "$p" "$(get "$p" | cut -d' ' -f2)"
done)
FIRST=$(curl -s -H "Cookie: $COOKIE" "$BASE/console/interactions?from=2026-10-01&to=2026-10-31" \
    | grep -o 'href="/console/interactions/[^"]*"' | head -1 | cut -d'"' -f2)
ONE=$(get "$FIRST" | cut -d' ' -f2)

python3 - "$OV" "$SR" "$SIZES" "$ONE" "$SR_EARLY" <<'PY'
import sys
ov = sorted(float(l.split()[0]) * 1000 for l in sys.argv[1].splitlines())
sr = sorted(float(l.split()[0]) * 1000 for l in sys.argv[2].splitlines())
se = sorted(float(l.split()[0]) * 1000 for l in sys.argv[5].splitlines())
p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
print(f"overview, 31 days: median {p(ov, .5):.0f} ms, best {ov[0]:.0f} ms, worst {ov[-1]:.0f} ms (5 runs)")
print(f"word search, 31 days, 50 rows, while the indexer catches up: p50 {p(se, .5):.0f} ms, p95 {p(se, .95):.0f} ms ({len(se)} searches)")
print(f"word search, 31 days, 50 rows, all indexed: p50 {p(sr, .5):.0f} ms, p95 {p(sr, .95):.0f} ms ({len(sr)} searches)")
for line in sys.argv[3].splitlines():
    path, size = line.rsplit(" ", 1)
    print(f"page {path}: {int(size):,} bytes")
print(f"page one interaction: {int(sys.argv[4]):,} bytes")
PY
stop_bg "$SERVER"
machine_line
