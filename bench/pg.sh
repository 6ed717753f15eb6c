#!/usr/bin/env bash
# PostgreSQL vs SQLite on the same seeded data: random 5-minute polls (32 keep-alive
# connections and 1), one ~60,000-row answer with curl (and the server's peak RSS), and
# `voxtrail seed` throughput — each figure measured on both backends in the same run. Baselines
# in the same run: PostgreSQL alone (loadgen --pg-url: the same windows read straight from the
# database with the server's row query), and PostgreSQL alone plus the server's limit
# statements (--pg-limits), so the table shows what the database, the limits and voxtrail each
# cost.
#
# Data: operations op01…op$OPS, each `voxtrail seed --count $COUNT --days 7 --until
# 20261008000000 --seed 42` (the rows of polls.sh's op01…), 4 report tokens per operation,
# in bench/out/pg.sqlite.db and in a PostgreSQL database `voxtrail_bench` (dropped and
# re-created each run) on $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
#
# Environment: VOXTRAIL_BIN, LOADGEN_BIN (else built), OPS (4), COUNT (100000), DURATION (s,
# 10), WARMUP (2), CONNS (32), REPS (big-answer fetches per backend, 3), POOL_SIZE (16).
# Requirements: cargo, curl, python3, psql, sqlite3.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

OPS=${OPS:-4}
COUNT=${COUNT:-100000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
REPS=${REPS:-3}
POOL_SIZE=${POOL_SIZE:-16}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_DB=voxtrail_bench
PG_URL="${PG_ADMIN_URL%/*}/$PG_DB?pool_size=$POOL_SIZE"
SQLITE_DB="$OUT_DIR/pg.sqlite.db"
FROM=20261001000000
UNTIL=20261008000000

VOXTRAIL=$(voxtrail_bin)
LOADGEN=$(loadgen_bin)
RES="$OUT_DIR/pg.results.jsonl"
: >"$RES"

psql -q -d "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB"
rm -f "$SQLITE_DB" "$SQLITE_DB-wal" "$SQLITE_DB-shm"

# seed BACKEND URL: operations, rows and tokens; records seconds of seeding in $RES.
seed() {
    local backend=$1 url=$2 tokens="$OUT_DIR/pg.$1.tokens" i op t0 t1
    : >"$tokens"
    t0=$(date +%s.%N)
    for i in $(seq 1 "$OPS"); do
        op=$(printf 'op%02d' "$i")
        "$VOXTRAIL" --database "$url" operation create "$op" >/dev/null
        "$VOXTRAIL" --database "$url" seed --operation "$op" --count "$COUNT" --days 7 \
            --until "$UNTIL" --seed 42 2>&1 | tail -n 1 >&2
    done
    t1=$(date +%s.%N)
    for i in $(seq 1 "$OPS"); do
        op=$(printf 'op%02d' "$i")
        for _ in 1 2 3 4; do
            printf '%s %s\n' "$op" "$("$VOXTRAIL" --database "$url" token create --operation "$op" \
                --daily-limit 100000000 2>/dev/null)" >>"$tokens"
        done
    done
    python3 -c 'import json,sys; print(json.dumps({"label": sys.argv[1], "kind": "seed", "rows": int(sys.argv[2]), "secs": float(sys.argv[4]) - float(sys.argv[3])}))' \
        "$backend" "$((OPS * COUNT))" "$t0" "$t1" >>"$RES"
}

log "seeding SQLite: $OPS x $COUNT rows"
seed sqlite "sqlite://$SQLITE_DB"
log "seeding PostgreSQL: $OPS x $COUNT rows"
seed postgres "$PG_URL"
psql -q -d "${PG_ADMIN_URL%/*}/$PG_DB" -c "VACUUM (ANALYZE) interactions" # visibility map: index-only counts
cat "$SQLITE_DB" >/dev/null

# The widest window of op01 from its first row holding at most 60,000 rows (same on both).
read -r INI END N < <(python3 - "$SQLITE_DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
op = db.execute("SELECT id FROM operations WHERE name = 'op01'").fetchone()[0]
ts = [r[0] for r in db.execute(
    "SELECT local_ts FROM interactions WHERE operation_id = ? ORDER BY local_ts LIMIT 60001", (op,))]
stop = ts[60000] if len(ts) > 60000 else None
end = max(t for t in ts[:60000] if stop is None or t < stop)
n = db.execute("SELECT COUNT(*) FROM interactions WHERE operation_id = ? AND local_ts BETWEEN ? AND ?",
               (op, ts[0], end)).fetchone()[0]
print(ts[0], end, n)
PY
)
log "big window $INI..$END of op01: $N rows"

for backend in sqlite postgres; do
    if [ "$backend" = sqlite ]; then url="sqlite://$SQLITE_DB"; else url="$PG_URL"; fi
    tokens="$OUT_DIR/pg.$backend.tokens"
    PORT=$(free_port)
    start_bg "$OUT_DIR/pg.$backend.serve.log" "$VOXTRAIL" --database "$url" serve --listen "127.0.0.1:$PORT"
    SPID=$BG_PID
    wait_port "$PORT" "$SPID"
    for conns in "$CONNS" 1; do
        run_fg "$LOADGEN" --addr "127.0.0.1:$PORT" --tokens "$tokens" --connections "$conns" \
            --duration "$DURATION" --warmup "$WARMUP" --from "$FROM" --to "$UNTIL" --window-secs 300 \
            --threads 1 --seed 7 --label "$backend" >>"$RES"
    done
    token=$(awk '$1 == "op01" {print $2; exit}' "$tokens")
    URL="http://127.0.0.1:$PORT/api/v2/reports_manager.php?api=chat_12&date_ini=$INI&date_end=$END"
    curl -s -o "$OUT_DIR/pg.$backend.big.json" -H "wolkvox-token: $token" "$URL"
    for _ in $(seq 1 "$REPS"); do
        read -r code bytes secs < <(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' \
            -H "wolkvox-token: $token" "$URL")
        printf '{"label": "%s", "kind": "big", "code": %s, "bytes": %s, "secs": %s}\n' \
            "$backend" "$code" "$bytes" "$secs" >>"$RES"
    done
    printf '{"label": "%s", "kind": "rss", "kb": %s}\n' "$backend" "$(vm_hwm_kb "$SPID")" >>"$RES"
    stop_bg "$SPID"
done
# PostgreSQL alone: the same random windows and the same big window asked of the database
# directly with the server's own row query (loadgen --pg-url), no HTTP, no limits — the
# ceiling the PostgreSQL backend can approach.
PG_DIRECT="${PG_ADMIN_URL%/*}/$PG_DB"
# With --pg-limits each read also runs the server's limit statements (slot + use in the same
# statement as the rows, then the unlock): what the cross-replica limits cost PostgreSQL.
for conns in "$CONNS" 1; do
    run_fg "$LOADGEN" --addr 127.0.0.1:1 --pg-url "$PG_DIRECT" --tokens "$OUT_DIR/pg.postgres.tokens" \
        --connections "$conns" --duration "$DURATION" --warmup "$WARMUP" --from "$FROM" --to "$UNTIL" \
        --window-secs 300 --threads 1 --seed 7 --label pg-alone >>"$RES"
    run_fg "$LOADGEN" --addr 127.0.0.1:1 --pg-url "$PG_DIRECT" --pg-limits \
        --tokens "$OUT_DIR/pg.postgres.tokens" --connections "$conns" --duration "$DURATION" \
        --warmup "$WARMUP" --from "$FROM" --to "$UNTIL" --window-secs 300 --threads 1 --seed 7 \
        --label pg-alone-limits >>"$RES"
done
read -r BIG_TO BIG_SECS < <(python3 - "$INI" "$END" <<'PY'
import datetime, sys
f = lambda s: datetime.datetime.strptime(s, "%Y%m%d%H%M%S")
ini, end = f(sys.argv[1]), f(sys.argv[2])
print((end + datetime.timedelta(seconds=1)).strftime("%Y%m%d%H%M%S"), int((end - ini).total_seconds()) + 1)
PY
)
awk '$1 == "op01" {print; exit}' "$OUT_DIR/pg.postgres.tokens" >"$OUT_DIR/pg.op01.token"
run_fg "$LOADGEN" --addr 127.0.0.1:1 --pg-url "$PG_DIRECT" --tokens "$OUT_DIR/pg.op01.token" \
    --connections 1 --duration "$((REPS * 2))" --warmup 1 --from "$INI" --to "$BIG_TO" \
    --window-secs "$BIG_SECS" --threads 1 --label pg-alone-big >>"$RES"

cmp -s "$OUT_DIR/pg.sqlite.big.json" "$OUT_DIR/pg.postgres.big.json" \
    && log "the 60,000-row answers are byte-identical on both backends" \
    || { log "the big answers DIFFER between backends"; exit 1; }

python3 - "$RES" "$CONNS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
conns = int(sys.argv[2])
def one(label, **kw):
    return [r for r in rows if r.get("label") == label and all(r.get(k) == v for k, v in kw.items())]
print("PostgreSQL vs SQLite, same seeded rows, same binary, same run;")
print("pg alone = the same queries sent straight to PostgreSQL (no HTTP, no limits)")
print(f"{'figure':<34}{'sqlite':>12}{'postgres':>12}{'pg/sqlite':>11}{'pg alone':>12}{'pg/alone':>10}")
def line(name, s, p, a=None):
    extra = "" if a is None else f"{a:>12.2f}{(p / a if a else float('nan')):>9.2f}x"
    print(f"{name:<34}{s:>12.2f}{p:>12.2f}{(p / s if s else float('nan')):>10.2f}x{extra}")
for c in (conns, 1):
    s = [r for r in one("sqlite") if r.get("connections") == c][0]
    p = [r for r in one("postgres") if r.get("connections") == c][0]
    a = [r for r in one("pg-alone") if r.get("connections") == c][0]
    line(f"polls {c} conn answers/s", s["answers_per_s"], p["answers_per_s"], a["answers_per_s"])
    line(f"polls {c} conn p50 ms", s["p50_ms"], p["p50_ms"], a["p50_ms"])
    line(f"polls {c} conn p99 ms", s["p99_ms"], p["p99_ms"], a["p99_ms"])
    print(f"{f'polls {c} conn errors':<34}{s['errors']:>12}{p['errors']:>12}{'':>11}{a['errors']:>12}")
bs = min(one("sqlite", kind="big"), key=lambda r: r["secs"])
bp = min(one("postgres", kind="big"), key=lambda r: r["secs"])
ba = one("pg-alone-big")[0]
assert bs["code"] == 200 and bp["code"] == 200, (bs, bp)
# The direct read counts json bytes plus one per row (the commas), not the envelope.
line("60k-row answer MB/s (best)", bs["bytes"] / bs["secs"] / 1e6, bp["bytes"] / bp["secs"] / 1e6,
     ba["mean_bytes"] / (ba["p50_ms"] / 1000) / 1e6)
line("60k-row answer seconds (best)", bs["secs"], bp["secs"], ba["p50_ms"] / 1000)
line("server peak RSS MB", one("sqlite", kind="rss")[0]["kb"] / 1024, one("postgres", kind="rss")[0]["kb"] / 1024)
ss, sp = one("sqlite", kind="seed")[0], one("postgres", kind="seed")[0]
line("seed rows/s", ss["rows"] / ss["secs"], sp["rows"] / sp["secs"])
print()
print("Where a PostgreSQL poll's time goes (answers/s; same windows, same run)")
print(f"{'connections':<14}{'rows only':>12}{'+ limits':>12}{'voxtrail':>12}{'voxtrail/+limits':>18}")
for c in (conns, 1):
    a = [r for r in one("pg-alone") if r.get("connections") == c][0]["answers_per_s"]
    l = [r for r in one("pg-alone-limits") if r.get("connections") == c][0]["answers_per_s"]
    v = [r for r in one("postgres") if r.get("connections") == c][0]["answers_per_s"]
    print(f"{c:<14}{a:>12.1f}{l:>12.1f}{v:>12.1f}{v / l:>17.2f}x")
print(f"answer size: {bs['bytes']} bytes")
PY
machine_line
