#!/usr/bin/env bash
# PostgreSQL console: the word-search index and the overview's counts, filled off the ingestion
# path by the server's indexer (store/postgres/console.rs). Two measures, same run:
#
# 1. Reads, on the shared bench data (10 operations × 100,000 rows over 7 days, as bench/lib.sh
#    seeds them) plus the largest operation `bench`, ~220,000 rows over 31 days: the 31-day
#    overview (5 runs) and word searches on the interactions page (SEARCHES, p50/p95), through
#    the real server, once the indexer has caught up. With VOXTRAIL_BIN_BEFORE, the binary
#    before the change is measured on its own copy of the same rows (CREATE DATABASE … TEMPLATE).
# 2. Ingestion cost: HTTP ingestion (import.sh's 200,000 NDJSON rows, batches of 1,000, 4
#    clients) into a fresh database with the indexer running every second (the default) and with
#    it held off (`search_index_interval_ms` = one day: only its first, empty, batch runs),
#    alternating, REPS times; the best rows/s of each and the cost in percent.
#
# Environment: VOXTRAIL_BIN (else built), VOXTRAIL_BIN_BEFORE (optional), COUNT (220000),
# SEARCHES (40), SEARCHES_BEFORE (searches of the binary before, default SEARCHES: a scan of the
# window takes ~45 s there), KEEP_BASE (1: reuse and keep the seeded base database), SKIP_READS
# (1: the ingestion part only), REPS (2),
# PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
# Requires psql.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-220000}
SEARCHES=${SEARCHES:-40}
REPS=${REPS:-2}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
VOXTRAIL=$(voxtrail_bin)
AFTER=$VOXTRAIL
BEFORE=${VOXTRAIL_BIN_BEFORE:-}
FIRST=${BEFORE:-$AFTER}
PGBASE=${PG_ADMIN_URL%/*}
BASE_DB=voxtrail_bench_console_base
psql_admin() { psql -q -X -d "$PG_ADMIN_URL" "$@"; }

# --- 1. reads --------------------------------------------------------------------------------
if [ "${SKIP_READS:-0}" != 1 ]; then
V0() { "$FIRST" --database "$PGBASE/$BASE_DB" "$@"; }
if [ "${KEEP_BASE:-0}" = 1 ] && V0 operation list 2>/dev/null | grep -q bench; then
    log "reusing the base database $BASE_DB (KEEP_BASE=1)"
else
    psql_admin -c "DROP DATABASE IF EXISTS $BASE_DB WITH (FORCE)" -c "CREATE DATABASE $BASE_DB"
    t0=$EPOCHREALTIME
    for i in $(seq 1 10); do
        op=$(printf 'op%02d' "$i")
        V0 operation create "$op" >/dev/null
        V0 seed --operation "$op" --count 100000 --days 7 --until 20261008000000 --seed 42 2>/dev/null
    done
    V0 operation create bench --timezone America/Bogota >/dev/null
    V0 seed --operation bench --count "$COUNT" --days 31 --until 20261031235959 --seed 1 2>/dev/null
    t1=$EPOCHREALTIME
    python3 -c "import sys; print(f'base: {1000000 + int(sys.argv[1]):,} rows seeded in {float(sys.argv[3])-float(sys.argv[2]):.0f} s')" "$COUNT" "$t0" "$t1"
fi

WORDS=(factura pedido envío garantía titularidad devolución diagnóstico radicado invoice refund shipping installment)
OVERVIEW="/console/?from=2026-10-01&to=2026-10-31"

measure() {
    local label=$1 bin=$2 db="voxtrail_bench_console_$1" url port server base cookie token
    url="$PGBASE/$db"
    psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE $BASE_DB"
    "$bin" --database "$url" migrate >/dev/null
    token=$("$bin" --database "$url" token create --operation bench --scope console 2>/dev/null)
    port=$(free_port)
    start_bg "$OUT_DIR/pg_console.$label.server.log" "$bin" --database "$url" serve --listen "127.0.0.1:$port"
    server=$BG_PID
    wait_port "$port" "$server"
    local t_up=$EPOCHREALTIME t_caught
    # Rows above the indexer's watermarks (0 at once on a binary without the indexer tables).
    behind() {
        psql -X -qtA -d "$url" -c "SELECT COALESCE(SUM(CASE WHEN i.m > COALESCE(s.upto, 0) THEN 1 ELSE 0 END), 0)
            FROM (SELECT operation_id, MAX(feed_pos) AS m FROM interactions GROUP BY 1) i
            LEFT JOIN console_index_state s USING (operation_id)" 2>/dev/null || echo 0
    }
    while [ "$(behind)" != "0" ]; do sleep 1; done
    t_caught=$EPOCHREALTIME
    base="http://127.0.0.1:$port"
    cookie=$(curl -s -o /dev/null -D - -H "Origin: $base" --data-urlencode "token=$token" "$base/console/login" \
        | awk -F'[ ;]' 'tolower($1)=="set-cookie:" {print $2}')
    [ -n "$cookie" ] || { log "sign-in failed"; exit 1; }
    get() { curl -s -o /dev/null -w '%{time_total}\n' -H "Cookie: $cookie" "$base$1"; }
    local ov sr i w n=$SEARCHES
    [ "$label" = before ] && n=${SEARCHES_BEFORE:-$SEARCHES}
    ov=$(for _ in 1 2 3 4 5; do get "$OVERVIEW"; done)
    sr=$(for i in $(seq 1 "$n"); do
        w=${WORDS[$((i % ${#WORDS[@]}))]}
        get "/console/interactions?from=2026-10-01&to=2026-10-31&q=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$w")"
    done)
    stop_bg "$server"
    psql_admin -c "DROP DATABASE $db WITH (FORCE)"
    python3 - "$label" "$ov" "$sr" "$t_up" "$t_caught" <<'PY' | tee "$OUT_DIR/pg_console.$label.txt"
import sys
label, ov, sr, up, caught = sys.argv[1:]
ms = lambda s: sorted(float(l) * 1000 for l in s.split())
ov, sr = ms(ov), ms(sr)
p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
print(f"[{label}] indexer caught up {float(caught)-float(up):.1f} s after the server started")
print(f"[{label}] overview, 31 days: median {p(ov, .5):.0f} ms, best {ov[0]:.0f} ms, worst {ov[-1]:.0f} ms (5 runs)")
print(f"[{label}] word search, 31 days, 50 rows: p50 {p(sr, .5):.0f} ms, p95 {p(sr, .95):.0f} ms ({len(sr)} searches)")
print(f"#ov {p(ov, .5)}")
print(f"#sr {p(sr, .95)}")
PY
}
if [ -n "$BEFORE" ]; then
    measure before "$BEFORE" | grep -v '^#'
fi
measure after "$AFTER" | grep -v '^#'
if [ -n "$BEFORE" ]; then
    python3 - "$OUT_DIR/pg_console.before.txt" "$OUT_DIR/pg_console.after.txt" <<'PY'
import sys
def figs(path):
    return {l.split()[0]: float(l.split()[1]) for l in open(path) if l.startswith("#")}
b, a = figs(sys.argv[1]), figs(sys.argv[2])
print(f"overview median: before {b['#ov']:.0f} ms, after {a['#ov']:.0f} ms, after/before {a['#ov']/b['#ov']:.3f}")
print(f"word search p95: before {b['#sr']:.0f} ms, after {a['#sr']:.0f} ms, after/before {a['#sr']/b['#sr']:.3f}")
PY
fi
[ "${KEEP_BASE:-0}" = 1 ] || psql_admin -c "DROP DATABASE $BASE_DB WITH (FORCE)"
fi

# --- 2. ingestion cost -----------------------------------------------------------------------
DIR="$OUT_DIR/import"
NDJSON="$DIR/rows.ndjson"
if [ ! -f "$NDJSON" ]; then
    log "no rows yet: running import.sh once to generate them"
    VOXTRAIL_BIN=$AFTER REPS=1 bash "$BENCH_DIR/import.sh" >/dev/null
fi
ROWS=$(wc -l <"$NDJSON")

# ingest LABEL INTERVAL_MS: rows/s of HTTP ingestion into a fresh database.
ingest() {
    local label=$1 interval=$2 db=voxtrail_bench_console_ingest url port server t0 t1 tokens=()
    url="$PGBASE/$db"
    psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    "$AFTER" --database "$url" operation create bench >/dev/null
    for _ in 1 2; do
        tokens+=("$("$AFTER" --database "$url" token create --operation bench --scope ingest 2>/dev/null)")
    done
    printf 'search_index_interval_ms = %s\n' "$interval" >"$OUT_DIR/pg_console.$label.toml"
    port=$(free_port)
    start_bg "$OUT_DIR/pg_console.ingest.log" "$AFTER" --database "$url" serve \
        --config "$OUT_DIR/pg_console.$label.toml" --listen "127.0.0.1:$port"
    server=$BG_PID
    wait_port "$port" "$server"
    t0=$EPOCHREALTIME
    python3 - "$port" "$NDJSON" 1000 4 "${tokens[@]}" <<'PY'
import http.client, sys, threading
port, path, batch, clients = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tokens = sys.argv[5:]
lines = open(path, "rb").read().splitlines(keepends=True)
bodies = [b"".join(lines[i:i + batch]) for i in range(0, len(lines), batch)]
failures = []
def client(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"wolkvox-token": tokens[k % len(tokens)], "Content-Type": "application/x-ndjson"}
    for body in bodies[k::clients]:
        while True:
            conn.request("POST", "/api/v2/interactions", body=body, headers=headers)
            r = conn.getresponse()
            text = r.read()
            if r.status == 200:
                break
            if (r.status == 403 and b"SIMULTANEOUS" in text) or r.status == 503:
                continue
            failures.append((r.status, text[:200]))
            return
threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"ingestion failed: {failures[:3]}")
PY
    t1=$EPOCHREALTIME
    stop_bg "$server"
    psql_admin -c "DROP DATABASE $db WITH (FORCE)"
    python3 -c "import sys; print(f'{int(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2])):.0f}')" "$ROWS" "$t0" "$t1"
}
ON=() OFF=()
for _ in $(seq 1 "$REPS"); do
    ON+=("$(ingest on 1000)")
    OFF+=("$(ingest off 86400000)")
done
python3 - "$ROWS" "${ON[*]}" "${OFF[*]}" <<'PY'
import sys
n, on, off = int(sys.argv[1]), [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"PostgreSQL HTTP ingestion, {n} rows, best of {len(on)} each:")
print(f"  indexer running (every 1 s):  {max(on):,.0f} rows/s  (runs: {', '.join(f'{x:,.0f}' for x in on)})")
print(f"  indexer held off:             {max(off):,.0f} rows/s  (runs: {', '.join(f'{x:,.0f}' for x in off)})")
print(f"  ratio: {max(on) / max(off):.2f}x (cost of the indexer running beside ingestion: {100 * (1 - max(on) / max(off)):.0f} %)")
PY
machine_line
