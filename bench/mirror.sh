#!/usr/bin/env bash
# Mirror catch-up: `voxtrail mirror run --once` copying ROWS upstream rows (seeded into a local
# upstream `voxtrail serve`, over real HTTP on 127.0.0.1) into a fresh SQLite database, beside
# `voxtrail import` of the same rows (as NDJSON) into another fresh database, in the same run.
# Figures: rows/s of each, and their ratio. No target yet: the mirror adds HTTP, JSON parsing and
# an upsert per row to what import does; the ratio says what that costs.
#
# Environment: VOXTRAIL_BIN (else built, release), ROWS (default 200000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-200000}
VOXTRAIL=$(voxtrail_bin)
command -v sqlite3 >/dev/null || { log "sqlite3 (the SQLite shell) is required"; exit 1; }

DIR="$OUT_DIR/mirror"
rm -rf "$DIR"
mkdir -p "$DIR"
UP="sqlite://$DIR/upstream.db"

log "seeding $ROWS rows upstream"
"$VOXTRAIL" --database "$UP" operation create src --timezone UTC >/dev/null
"$VOXTRAIL" --database "$UP" seed --operation src --count "$ROWS" --days 7 \
    --until 20261008000000 --seed 7 2>&1 | tail -n 1 >&2
TOKEN=$("$VOXTRAIL" --database "$UP" token create --operation src --scope report \
    --daily-limit 1000000)
sqlite3 "$DIR/upstream.db" 'SELECT CAST(json AS TEXT) FROM interactions ORDER BY seq' \
    >"$DIR/rows.ndjson"

PORT=$(free_port)
"$VOXTRAIL" --database "$UP" serve --listen "127.0.0.1:$PORT" >/dev/null 2>"$DIR/upstream.log" &
BENCH_PIDS+=($!)
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

now_s() { printf '%s\n' "$EPOCHREALTIME"; }

# The mirror: windows of 6 hours (every answer well under 60,000 rows).
DOWN="sqlite://$DIR/mirror.db"
printf '%s\n' "$TOKEN" >"$DIR/token"
"$VOXTRAIL" --database "$DOWN" mirror set --operation copy --url "http://127.0.0.1:$PORT" \
    --since 20260930000000 --window 6h --timezone UTC --token-file "$DIR/token" 2>/dev/null
t0=$(now_s)
"$VOXTRAIL" --database "$DOWN" mirror run --operation copy --once 2>"$DIR/mirror.log"
t1=$(now_s)
COPIED=$(sqlite3 "$DIR/mirror.db" 'SELECT COUNT(*) FROM interactions')
[ "$COPIED" = "$ROWS" ] || { log "the mirror holds $COPIED rows, not $ROWS"; exit 1; }

# The same rows through `voxtrail import`.
IMP="sqlite://$DIR/import.db"
"$VOXTRAIL" --database "$IMP" operation create copy --timezone UTC >/dev/null
t2=$(now_s)
"$VOXTRAIL" --database "$IMP" import --operation copy "$DIR/rows.ndjson" 2>"$DIR/import.log"
t3=$(now_s)

python3 - "$ROWS" "$t0" "$t1" "$t2" "$t3" <<'PY' | tee "$DIR/results.txt"
import sys
rows = int(sys.argv[1]); t0, t1, t2, t3 = map(float, sys.argv[2:])
m, i = rows / (t1 - t0), rows / (t3 - t2)
print(f"mirror run --once: {rows} rows in {t1 - t0:.2f} s = {m:,.0f} rows/s")
print(f"import (NDJSON):   {rows} rows in {t3 - t2:.2f} s = {i:,.0f} rows/s")
print(f"mirror / import:   {m / i:.2f}")
PY
