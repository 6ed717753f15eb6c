#!/usr/bin/env bash
# Import: `voxtrail import` of NDJSON (200,000 seeded rows) into a fresh database, against the
# sqlite3 shell's own `.import` of the same rows as CSV into a fresh table with the same columns
# and the same two indexes, both durable (WAL, synchronous=FULL, one transaction), in the same
# run. Target (bench/README.md): voxtrail at least as fast as sqlite3's .import.
#
# Environment: VOXTRAIL_BIN (else built), ROWS (default 200000), REPS (default 3; the two
# importers alternate, the best run of each is compared).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-200000}
REPS=${REPS:-3}
VOXTRAIL=$(voxtrail_bin)
command -v sqlite3 >/dev/null || { log "sqlite3 (the SQLite shell) is required"; exit 1; }

DIR="$OUT_DIR/import"
mkdir -p "$DIR"
NDJSON="$DIR/rows.ndjson"
CSV="$DIR/rows.csv"
KEY="rows=$ROWS csv=seq gen=$(seed_fingerprint)"

if [ -f "$NDJSON" ] && [ -f "$CSV" ] && [ "$(cat "$DIR/key" 2>/dev/null)" = "$KEY" ]; then
    log "reusing $NDJSON and $CSV ($KEY)"
else
    log "generating $ROWS rows"
    rm -f "$DIR"/scratch.db* "$NDJSON" "$CSV" "$DIR/key"
    "$VOXTRAIL" --database "sqlite://$DIR/scratch.db" operation create scratch >/dev/null
    "$VOXTRAIL" --database "sqlite://$DIR/scratch.db" seed --operation scratch --count "$ROWS" \
        --days 7 --until 20261008000000 --seed 7 2>&1 | tail -n 1 >&2
    # NDJSON: the stored chat_12 objects, one per line, as the report would send them.
    # CSV: the table's columns (seq, operation_id, conn_id, local_ts, json_len, json) for sqlite3.
    python3 - "$DIR/scratch.db" "$NDJSON" "$CSV" <<'PY'
import csv, json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
with open(sys.argv[2], "wb") as nd, open(sys.argv[3], "w", newline="", encoding="utf-8") as cf:
    w = csv.writer(cf)
    w.writerow(["seq", "operation_id", "conn_id", "local_ts", "json_len", "json"])
    for seq, (blob,) in enumerate(db.execute("SELECT json FROM interactions ORDER BY seq"), 1):
        raw = bytes(blob) if not isinstance(blob, str) else blob.encode()
        assert b"\n" not in raw
        nd.write(raw + b"\n")
        rec = json.loads(raw)
        ts = int("".join(ch for ch in rec["date"] if ch.isdigit()))
        w.writerow([seq, 1, rec["conn_id"], ts, len(raw), raw.decode()])
PY
    rm -f "$DIR"/scratch.db*
    printf '%s\n' "$KEY" >"$DIR/key"
fi
log "NDJSON $(du -h "$NDJSON" | cut -f1), CSV $(du -h "$CSV" | cut -f1), $(wc -l <"$NDJSON") records"

# now_s: wall clock in seconds with microseconds.
# The page size voxtrail gives a new database, for the sqlite3 baseline.
rm -f "$DIR"/pagesize.db*
"$VOXTRAIL" --database "sqlite://$DIR/pagesize.db" operation create probe >/dev/null
PAGE_SIZE=$(sqlite3 "$DIR/pagesize.db" 'PRAGMA page_size')
rm -f "$DIR"/pagesize.db*

now_s() { printf '%s\n' "$EPOCHREALTIME"; }
RES="$DIR/results.txt"
: >"$RES"

run_voxtrail() {
    local db="$DIR/voxtrail.db" t0 t1
    rm -f "$db" "$db-wal" "$db-shm"
    "$VOXTRAIL" --database "sqlite://$db" operation create bench >/dev/null
    sync
    t0=$(now_s)
    run_fg "$VOXTRAIL" --database "sqlite://$db" import --operation bench "$NDJSON" 2>"$DIR/voxtrail.import.log"
    t1=$(now_s)
    local n
    n=$(sqlite3 "$db" 'select count(*) from interactions')
    [ "$n" = "$ROWS" ] || { log "voxtrail stored $n rows, expected $ROWS"; tail -5 "$DIR/voxtrail.import.log" >&2; exit 1; }
    echo "voxtrail $t0 $t1" >>"$RES"
}

run_sqlite3() {
    local db="$DIR/sqlite3.db" t0 t1
    t0=$(now_s)
    sqlite3_import_baseline "$db" "$CSV" "$PAGE_SIZE" "$ROWS"
    t1=$(now_s)
    echo "sqlite3 $t0 $t1" >>"$RES"
}

for _ in $(seq 1 "$REPS"); do
    run_voxtrail
    run_sqlite3
done
rm -f "$DIR"/voxtrail.db* "$DIR"/sqlite3.db*

python3 - "$RES" "$ROWS" "$PAGE_SIZE" <<'PY'
import statistics, sys
rows = int(sys.argv[2])
runs = {}
for line in open(sys.argv[1]):
    label, t0, t1 = line.split()
    runs.setdefault(label, []).append(float(t1) - float(t0))
v, s = min(runs["voxtrail"]), min(runs["sqlite3"])
print(f"import: {rows} records, best of {len(runs['voxtrail'])} runs each (durable: WAL + synchronous=FULL, page size {sys.argv[3]})")
print(f"{'':<36}{'seconds':>9}{'records/s':>12}")
print(f"{'voxtrail import (NDJSON)':<36}{v:>9.2f}{rows/v:>12.0f}")
print(f"{'sqlite3 .import (CSV, same indexes)':<36}{s:>9.2f}{rows/s:>12.0f}")
print(f"ratio voxtrail / sqlite3 (records/s): {s/v:.2f}x   target >= 1.0x")
print("all runs (seconds): " + "; ".join(f"{k} " + " ".join(f"{t:.2f}" for t in r) for k, r in runs.items()))
PY
machine_line
