#!/usr/bin/env bash
# Mirror catch-up (issue 11, SPEC §9), three figures, each beside its baseline in the same run:
#
# 1. SQLite: `voxtrail mirror run --once` copying ROWS upstream rows (~2.3 KB each) from a local
#    fake of the hosted API (bench/mirror_fake.py: prepared bytes, uncompressed, over real HTTP
#    on 127.0.0.1) into a fresh database, vs `voxtrail import` of the same rows (NDJSON) into
#    another fresh database. Targets: mirror >= 40,000 rows/s and >= 0.8x import.
# 2. PostgreSQL: the same into a fresh PostgreSQL database vs `voxtrail import` into another.
#    Targets: mirror >= 15,000 rows/s and >= 0.8x import. Skipped with SKIP_PG=1.
# 3. Another operation's polls during a catch-up: one `voxtrail serve` on a SQLite database
#    whose operation `polled` (POLL_ROWS rows) is polled by bench/loadgen (random 5-minute
#    windows, CONNS connections) for DURATION s before, during and after the same ROWS-row
#    catch-up of a mirror that `serve` itself runs. Target: answers/s during >= 0.8x the mean
#    of before and after.
#
# Environment: VOXTRAIL_BIN, LOADGEN_BIN (else built, release), ROWS (200000), WINDOW (mirror
# --window, 1d), POLL_ROWS (100000), CONNS (32), DURATION (4), SKIP_PG, PG_ADMIN_URL
# (postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-200000}
WINDOW=${WINDOW:-1d}
POLL_ROWS=${POLL_ROWS:-100000}
CONNS=${CONNS:-32}
DURATION=${DURATION:-4}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
VOXTRAIL=$(voxtrail_bin)
LOADGEN=$(loadgen_bin)
command -v sqlite3 >/dev/null || { log "sqlite3 (the SQLite shell) is required"; exit 1; }

DIR="$OUT_DIR/mirror"
rm -rf "$DIR"
mkdir -p "$DIR"
SINCE=20260930000000
machine_line | tee "$DIR/results.txt"

# --- The rows: seeded once, dumped as the NDJSON both the fake and import read. -----------
log "seeding $ROWS rows"
SRC="sqlite://$DIR/source.db"
"$VOXTRAIL" --database "$SRC" operation create src --timezone UTC >/dev/null
"$VOXTRAIL" --database "$SRC" seed --operation src --count "$ROWS" --days 7 \
    --until 20261008000000 --seed 7 2>&1 | tail -n 1 >&2
sqlite3 "$DIR/source.db" 'SELECT CAST(json AS TEXT) FROM interactions ORDER BY seq' \
    >"$DIR/rows.ndjson"
rm -f "$DIR/source.db" "$DIR/source.db-wal" "$DIR/source.db-shm"
AVG=$(( $(stat -c %s "$DIR/rows.ndjson") / ROWS ))
log "rows: $ROWS, $AVG bytes each on average"

TOKEN=upstream-bench-token
printf '%s\n' "$TOKEN" >"$DIR/token"
FAKE_PORT=$(free_port)
start_bg "$DIR/fake.log" python3 "$BENCH_DIR/mirror_fake.py" "$DIR/rows.ndjson" "$TOKEN" "$FAKE_PORT"
FAKE_PID=$BG_PID
wait_port "$FAKE_PORT" "$FAKE_PID"
UPSTREAM="http://127.0.0.1:$FAKE_PORT"

now_s() { printf '%s\n' "$EPOCHREALTIME"; }
rate() { python3 -c 'import sys; n, a, b = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]); print(f"{n / (b - a):.0f} {b - a:.2f}")' "$@"; }

# mirror_vs_import NAME MIRROR_DB_URL IMPORT_DB_URL COUNT_CMD...: times `mirror run --once` and
# `import` of the same rows, checks both hold ROWS rows, appends the figures.
mirror_vs_import() {
    local name=$1 down=$2 imp=$3 t0 t1 t2 t3 m i n
    shift 3
    "$VOXTRAIL" --database "$down" mirror set --operation copy --url "$UPSTREAM" \
        --since "$SINCE" --window "$WINDOW" --timezone UTC --token-file "$DIR/token" 2>/dev/null
    sync
    t0=$(now_s)
    "$VOXTRAIL" --database "$down" mirror run --operation copy --once 2>"$DIR/$name-mirror.log"
    t1=$(now_s)
    n=$("$@" "$down")
    [ "$n" = "$ROWS" ] || { log "$name: the mirror holds $n rows, not $ROWS"; exit 1; }
    "$VOXTRAIL" --database "$imp" operation create copy --timezone UTC >/dev/null
    sync
    t2=$(now_s)
    "$VOXTRAIL" --database "$imp" import --operation copy "$DIR/rows.ndjson" 2>"$DIR/$name-import.log"
    t3=$(now_s)
    n=$("$@" "$imp")
    [ "$n" = "$ROWS" ] || { log "$name: import stored $n rows, not $ROWS"; exit 1; }
    read -r m mt < <(rate "$ROWS" "$t0" "$t1")
    read -r i it < <(rate "$ROWS" "$t2" "$t3")
    {
        printf '%s mirror run --once: %s rows in %s s = %s rows/s (--window %s)\n' "$name" "$ROWS" "$mt" "$m" "$WINDOW"
        printf '%s import (NDJSON):   %s rows in %s s = %s rows/s\n' "$name" "$ROWS" "$it" "$i"
        python3 -c 'import sys; print(f"{sys.argv[1]} mirror / import:   {int(sys.argv[2]) / int(sys.argv[3]):.2f}")' "$name" "$m" "$i"
    } | tee -a "$DIR/results.txt"
}

sqlite_count() { sqlite3 "${1#sqlite://}" 'SELECT COUNT(*) FROM interactions'; }
pg_count() { psql -qtA "$1" -c 'SELECT COUNT(*) FROM interactions'; }

# --- 1. SQLite ----------------------------------------------------------------------------
log "SQLite: mirror vs import"
mirror_vs_import sqlite "sqlite://$DIR/mirror.db" "sqlite://$DIR/import.db" sqlite_count
rm -f "$DIR"/mirror.db* "$DIR"/import.db*

# --- 2. PostgreSQL ------------------------------------------------------------------------
if [ -z "${SKIP_PG:-}" ]; then
    command -v psql >/dev/null || { log "psql is required (or SKIP_PG=1)"; exit 1; }
    SUFFIX="$$_$(date +%s)"
    PG_MIRROR="mirror_bench_m_$SUFFIX"
    PG_IMPORT="mirror_bench_i_$SUFFIX"
    pg_url() { printf '%s/%s\n' "${PG_ADMIN_URL%/*}" "$1"; }
    pg_drop() {
        psql -qtA "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_MIRROR WITH (FORCE)" >/dev/null 2>&1 || true
        psql -qtA "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_IMPORT WITH (FORCE)" >/dev/null 2>&1 || true
    }
    trap 'pg_drop; bench_cleanup' EXIT
    psql -qtA "$PG_ADMIN_URL" -c "CREATE DATABASE $PG_MIRROR" >/dev/null
    psql -qtA "$PG_ADMIN_URL" -c "CREATE DATABASE $PG_IMPORT" >/dev/null
    log "PostgreSQL: mirror vs import"
    mirror_vs_import postgres "$(pg_url "$PG_MIRROR")" "$(pg_url "$PG_IMPORT")" pg_count
    pg_drop
fi

# --- 3. Another operation's polls during a catch-up inside `serve` -------------------------
log "$(date +%T) polls of another operation before, during and after a catch-up run by serve"
SERVED="$DIR/served.db"
"$VOXTRAIL" --database "sqlite://$SERVED" operation create polled --timezone UTC >/dev/null
"$VOXTRAIL" --database "sqlite://$SERVED" seed --operation polled --count "$POLL_ROWS" --days 7 \
    --until 20261008000000 --seed 42 2>&1 | tail -n 1 >&2
: >"$DIR/polls.tokens"
for _ in $(seq 1 16); do
    printf 'polled %s\n' "$("$VOXTRAIL" --database "sqlite://$SERVED" token create \
        --operation polled --daily-limit 100000000 2>/dev/null)" >>"$DIR/polls.tokens"
done
PORT=$(free_port)
start_bg "$DIR/serve.log" "$VOXTRAIL" --database "sqlite://$SERVED" serve --listen "127.0.0.1:$PORT"
SERVE_PID=$BG_PID
wait_port "$PORT" "$SERVE_PID"
log "$(date +%T) serve listening"

polls() {
    "$LOADGEN" --addr "127.0.0.1:$PORT" --tokens "$DIR/polls.tokens" --connections "$CONNS" \
        --per-token 2 --duration "$DURATION" --warmup 1 --from 20261001000000 \
        --to 20261008000000 --window-secs 300 --label "$1" 2>>"$DIR/loadgen.log" |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)[sys.argv[1]]))' answers_per_s
}
mirrored() { sqlite3 "$SERVED" 'SELECT IFNULL(MAX(rows_inserted), 0) FROM mirrors'; }
# indexed: whether serve's word-search indexer has caught up with every stored row (it indexes
# after ingestion, at its own pace; polls are measured without it, except during the catch-up).
indexed() {
    sqlite3 "$SERVED" 'SELECT (SELECT indexed_upto FROM console_fts_state) >= (SELECT IFNULL(MAX(seq), 0) FROM interactions)'
}
wait_indexed() {
    for _ in $(seq 1 3000); do
        [ "$(indexed)" = 1 ] && return 0
        sleep 0.2
    done
    log "the word-search indexer did not catch up"
    exit 1
}

log "$(date +%T) waiting for serve's word-search indexer"
wait_indexed
log "$(date +%T) polls before"
BEFORE=$(polls before)
"$VOXTRAIL" --database "sqlite://$SERVED" mirror set --operation copy --url "$UPSTREAM" \
    --since "$SINCE" --window "$WINDOW" --timezone UTC --token-file "$DIR/token" 2>/dev/null
for _ in $(seq 1 300); do
    [ "$(mirrored)" -gt 0 ] && break
    sleep 0.1
done
AT_START=$(mirrored)
log "$(date +%T) polls during the catch-up (from $AT_START rows)"
t0=$(now_s)
DURING=$(polls during)
t1=$(now_s)
AT_END=$(mirrored)
for _ in $(seq 1 1800); do
    [ "$(mirrored)" -ge "$ROWS" ] && break
    sleep 0.1
done
t2=$(now_s)
[ "$(mirrored)" -ge "$ROWS" ] || { log "the catch-up inside serve did not finish"; exit 1; }
log "$(date +%T) catch-up done; waiting for the indexer"
wait_indexed
log "$(date +%T) polls after"
AFTER=$(polls after)
stop_bg "$SERVE_PID"
python3 - "$BEFORE" "$DURING" "$AFTER" "$AT_START" "$AT_END" "$ROWS" "$t0" "$t1" "$t2" "$CONNS" \
    <<'PY' | tee -a "$DIR/results.txt"
import sys
b, d, a = map(float, sys.argv[1:4])
s, e, rows = map(int, sys.argv[4:7])
t0, t1, t2 = map(float, sys.argv[7:10])
base = (b + a) / 2
print(f"polls of another operation ({sys.argv[10]} connections, answers/s): before {b:.0f}, "
      f"during the catch-up {d:.0f}, after {a:.0f}; during / mean(before, after) = {d / base:.2f}")
note = "" if e < rows else " (the catch-up ended inside the measurement: the figure is diluted)"
print(f"catch-up inside serve while polled: {e - s} rows in {t1 - t0:.1f} s = "
      f"{(e - s) / (t1 - t0):.0f} rows/s{note}; all {rows} rows done {t2 - t0:.1f} s after")
PY
stop_bg "$FAKE_PID"
grep -h 'requests=' "$DIR/fake.log" | tail -n 1 | sed 's/^/fake upstream: /' | tee -a "$DIR/results.txt"
rm -f "$DIR"/served.db* "$DIR/rows.ndjson"
