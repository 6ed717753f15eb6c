#!/usr/bin/env bash
# Before/after: the same three figures for two voxtrail binaries in one run, alternating, so a
# change can show it made nothing slower on this noisy machine:
#   - polls: random 5-minute windows of the shared 1,000,000-row database, 32 connections and
#     1 connection (answers/s, p50, p99), with bench/loadgen;
#   - the big answer: one window of op01 just under 60,000 rows, fetched with curl (MB/s);
#   - import: `voxtrail import` of 200,000 NDJSON rows (import.sh's file) into a fresh database.
# Each round runs before then after (then after then before on the next round, so neither
# always goes first); the best of the rounds of each is compared.
#
# Environment: VOXTRAIL_BIN_BEFORE (required: the binary of the commit before the change),
# VOXTRAIL_BIN (the binary after; else built), LOADGEN_BIN (else built), ROUNDS (3),
# DURATION (s per poll run, 8), REPS (big-answer fetches per round, 3), IMPORT_ROWS (200000).
# Each binary serves its own VACUUMed copy of the same rows (the newer one migrated first), so
# neither is measured on a table its migration left out of order.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BEFORE=${VOXTRAIL_BIN_BEFORE:?set VOXTRAIL_BIN_BEFORE to the binary built from the commit before the change}
VOXTRAIL=$(voxtrail_bin)
AFTER=$VOXTRAIL
LOADGEN=$(loadgen_bin)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
REPS=${REPS:-3}
IMPORT_ROWS=${IMPORT_ROWS:-200000}
command -v curl >/dev/null || { log "curl is required"; exit 1; }

# Each binary serves its own VACUUMed copy of the shared database (the after copy migrated
# first; lib.sh, ensure_before_after_dbs).
ensure_before_after_dbs "$BEFORE" "$AFTER"
TOKEN=$(awk '$1 == "op01" {print $2; exit}' "$POLLS_TOKENS")
read -r INI END < <(python3 - "$POLLS_DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
op = db.execute("SELECT id FROM operations WHERE name = 'op01'").fetchone()[0]
ts = [r[0] for r in db.execute(
    "SELECT local_ts FROM interactions WHERE operation_id = ? ORDER BY local_ts LIMIT 60001", (op,))]
stop = ts[60000] if len(ts) > 60000 else None
print(ts[0], max(t for t in ts[:60000] if stop is None or t < stop))
PY
)

NDJSON="$OUT_DIR/import/rows.ndjson"
if [ ! -f "$NDJSON" ] || [ "$(wc -l <"$NDJSON")" != "$IMPORT_ROWS" ]; then
    log "generating the import rows with import.sh's generator (REPS=1)"
    ROWS=$IMPORT_ROWS REPS=1 VOXTRAIL_BIN=$AFTER "$BENCH_DIR/import.sh" >/dev/null
fi

RES="$OUT_DIR/before_after.results.jsonl"
: >"$RES"
now_s() { printf '%s\n' "$EPOCHREALTIME"; }

# measure LABEL BINARY ROUND DATABASE
measure() {
    local label=$1 bin=$2 round=$3 served=$4 port pid url t0 t1 i db
    port=$(free_port)
    start_bg "$OUT_DIR/before_after.$label.log" "$bin" --database "sqlite://$served" serve --listen "127.0.0.1:$port"
    pid=$BG_PID
    wait_port "$port" "$pid"
    for conns in 32 1; do
        run_fg "$LOADGEN" --addr "127.0.0.1:$port" --tokens "$POLLS_TOKENS" --connections "$conns" \
            --duration "$DURATION" --warmup 2 --from "$POLLS_FROM" --to "$POLLS_UNTIL" --window-secs 300 \
            --threads 1 --seed "$round" --label "$label" >>"$RES"
    done
    url="http://127.0.0.1:$port/api/v2/reports_manager.php?api=chat_12&date_ini=$INI&date_end=$END"
    for i in $(seq 1 "$REPS"); do
        curl -s -o /dev/null -H "wolkvox-token: $TOKEN" \
            -w "{\"label\":\"$label\",\"big\":true,\"code\":%{http_code},\"bytes\":%{size_download},\"seconds\":%{time_total}}\n" \
            "$url" >>"$RES"
    done
    printf '{"label":"%s","rss_kb":%s}\n' "$label" "$(vm_hwm_kb "$pid")" >>"$RES"
    stop_bg "$pid"
    db="$OUT_DIR/before_after.import.db"
    rm -f "$db" "$db-wal" "$db-shm"
    "$bin" --database "sqlite://$db" operation create bench >/dev/null
    sync
    t0=$(now_s)
    run_fg "$bin" --database "sqlite://$db" import --operation bench "$NDJSON" 2>/dev/null
    t1=$(now_s)
    printf '{"label":"%s","import_seconds":%s}\n' "$label" "$(python3 -c "print($t1-$t0)")" >>"$RES"
    rm -f "$db" "$db-wal" "$db-shm"
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        measure before "$BEFORE" "$round" "$BEFORE_DB"
        measure after "$AFTER" "$round" "$AFTER_DB"
    else
        measure after "$AFTER" "$round" "$AFTER_DB"
        measure before "$BEFORE" "$round" "$BEFORE_DB"
    fi
done

python3 - "$RES" "$IMPORT_ROWS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n_import = int(sys.argv[2])
def polls(label, conns):
    return [r for r in rows if r.get("label") == label and r.get("connections") == conns]
def big(label):
    return [r for r in rows if r.get("label") == label and r.get("big")]
def imp(label):
    return [r["import_seconds"] for r in rows if r.get("label") == label and "import_seconds" in r]
def rss(label):
    return max(r["rss_kb"] for r in rows if r.get("label") == label and "rss_kb" in r)
bad = [r for r in rows if r.get("big") and r["code"] != 200]
if bad:
    sys.exit(f"big answer failed: {bad[0]}")
print("before/after: best of the rounds of each (after/before > 1 = after faster for rates)")
print(f"{'figure':<30}{'before':>12}{'after':>12}{'after/before':>14}")
for c in (32, 1):
    b = max(polls("before", c), key=lambda r: r["answers_per_s"])
    a = max(polls("after", c), key=lambda r: r["answers_per_s"])
    print(f"{f'polls {c} conn answers/s':<30}{b['answers_per_s']:>12.0f}{a['answers_per_s']:>12.0f}{a['answers_per_s']/b['answers_per_s']:>13.2f}x")
    for k in ("p50_ms", "p99_ms"):
        print(f"{f'polls {c} conn {k}':<30}{b[k]:>12.2f}{a[k]:>12.2f}{b[k]/a[k] if a[k] else float('nan'):>13.2f}x")
bb, ba = min(big("before"), key=lambda r: r["seconds"]), min(big("after"), key=lambda r: r["seconds"])
mb = bb["bytes"] / 1e6
print(f"{'big answer MB/s':<30}{mb/bb['seconds']:>12.0f}{mb/ba['seconds']:>12.0f}{bb['seconds']/ba['seconds']:>13.2f}x   ({bb['bytes']} bytes)")
ib, ia = min(imp("before")), min(imp("after"))
print(f"{'import records/s':<30}{n_import/ib:>12.0f}{n_import/ia:>12.0f}{ib/ia:>13.2f}x")
print(f"{'server peak RSS MB':<30}{rss('before')/1024:>12.1f}{rss('after')/1024:>12.1f}")
PY
machine_line
