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
#    windows, CONNS connections) for DURATION s without and during a ROWS-row catch-up of a
#    mirror that `serve` itself runs, POLL_REPS rounds (a new mirror each). Target: answers/s
#    during >= 0.8x the mean of the measurements without just before and after.
#
# Figures 1 and 2 are the best of REPS alternating rounds, each into fresh databases; with
# VOXTRAIL_BIN_BEFORE (a build of an earlier commit) its mirror runs in the same rounds too.
#
# Environment: VOXTRAIL_BIN, LOADGEN_BIN (else built, release), VOXTRAIL_BIN_BEFORE, ROWS
# (200000), REPS (3), WINDOW (mirror --window, 1d), POLL_ROWS (100000), CONNS (32), DURATION (4),
# POLL_REPS (3), SKIP_PG, ONLY_POLLS (figure 3 alone), ONLY_PG (figure 2 alone), PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-200000}
REPS=${REPS:-3}
WINDOW=${WINDOW:-1d}
POLL_ROWS=${POLL_ROWS:-100000}
CONNS=${CONNS:-32}
DURATION=${DURATION:-4}
POLL_REPS=${POLL_REPS:-3}
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

# One timed command; prints its seconds.
timed() {
    local t0 t1
    t0=$(now_s)
    "$@"
    t1=$(now_s)
    python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$t0" "$t1"
}

# mirror_vs_import NAME FRESH COUNT: REPS rounds, alternating, each into fresh databases
# (FRESH KIND prints the URL of a new empty database): `mirror run --once` (and, with
# VOXTRAIL_BIN_BEFORE, the same with that binary), then `import` of the same rows; checks every
# copy holds ROWS rows; appends the best rows/s of each and their ratios to the results.
mirror_vs_import() {
    local name=$1 fresh=$2 count=$3 rep bin label url secs n
    local -A best=()
    local labels=(mirror)
    [ -n "${VOXTRAIL_BIN_BEFORE:-}" ] && labels+=(mirror_before)
    for rep in $(seq 1 "$REPS"); do
        for label in "${labels[@]}" import; do
            bin=$VOXTRAIL
            [ "$label" = mirror_before ] && bin=$VOXTRAIL_BIN_BEFORE
            url=$("$fresh" "$label")
            if [ "$label" = import ]; then
                "$VOXTRAIL" --database "$url" operation create copy --timezone UTC >/dev/null
                secs=$(timed "$bin" --database "$url" import --operation copy "$DIR/rows.ndjson" \
                    2>>"$DIR/$name-import.log")
            else
                "$bin" --database "$url" mirror set --operation copy --url "$UPSTREAM" \
                    --since "$SINCE" --window "$WINDOW" --timezone UTC --token-file "$DIR/token" 2>/dev/null
                secs=$(timed "$bin" --database "$url" mirror run --operation copy --once \
                    2>>"$DIR/$name-$label.log")
            fi
            n=$("$count" "$url")
            [ "$n" = "$ROWS" ] || { log "$name $label: $n rows, not $ROWS"; exit 1; }
            log "$name $label round $rep: $secs s"
            printf '%s %s %s\n' "$name" "$label" "$secs" >>"$DIR/times.txt"
            if [ -z "${best[$label]:-}" ] || python3 -c 'import sys; sys.exit(float(sys.argv[1]) >= float(sys.argv[2]))' "$secs" "${best[$label]}"; then
                best[$label]=$secs
            fi
        done
    done
    python3 - "$name" "$ROWS" "$WINDOW" "$REPS" "${best[mirror]}" "${best[import]}" "${best[mirror_before]:-}" \
        "$DIR/times.txt" <<'PY' | tee -a "$DIR/results.txt"
import statistics, sys
name, rows, window, reps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m, i = float(sys.argv[5]), float(sys.argv[6])
print(f"{name}: mirror run --once (--window {window}) {rows / m:,.0f} rows/s ({m:.2f} s), "
      f"import {rows / i:,.0f} rows/s ({i:.2f} s); mirror / import = {i / m:.2f} (best of {reps})")
times = {}
for line in open(sys.argv[8]):
    n, label, secs = line.split()
    if n == name:
        times.setdefault(label, []).append(float(secs))
pairs = [imp / mir for mir, imp in zip(times["mirror"], times["import"])]
print(f"{name}: mirror / import round by round: {', '.join(f'{x:.2f}' for x in pairs)}; "
      f"median {statistics.median(pairs):.2f}")
if sys.argv[7]:
    b = float(sys.argv[7])
    print(f"{name}: the same mirror with VOXTRAIL_BIN_BEFORE: {rows / b:,.0f} rows/s ({b:.2f} s); "
          f"after / before = {b / m:.2f}; before / import = {i / b:.2f}")
PY
}

sqlite_count() { sqlite3 "${1#sqlite://}" 'SELECT COUNT(*) FROM interactions'; }
pg_count() { psql -qtA "$1" -c 'SELECT COUNT(*) FROM interactions'; }
sqlite_fresh() {
    rm -f "$DIR/$1.db" "$DIR/$1.db-wal" "$DIR/$1.db-shm"
    printf 'sqlite://%s\n' "$DIR/$1.db"
}

# --- 1. SQLite ----------------------------------------------------------------------------
if [ -z "${ONLY_POLLS:-}" ] && [ -z "${ONLY_PG:-}" ]; then
    log "SQLite: mirror vs import"
    mirror_vs_import sqlite sqlite_fresh sqlite_count
    rm -f "$DIR"/mirror*.db* "$DIR"/import.db*
fi

# --- 2. PostgreSQL ------------------------------------------------------------------------
if [ -z "${SKIP_PG:-}" ] && [ -z "${ONLY_POLLS:-}" ]; then
    command -v psql >/dev/null || { log "psql is required (or SKIP_PG=1)"; exit 1; }
    # The databases created, one name a line (pg_fresh runs in a subshell: a file, not a
    # variable).
    PG_DBS="$DIR/pg_databases"
    : >"$PG_DBS"
    pg_drop() {
        local db
        while read -r db; do
            psql -qtA "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
        done <"$PG_DBS"
        : >"$PG_DBS"
    }
    trap 'pg_drop; bench_cleanup' EXIT
    # A new uniquely named database per copy (the previous one of the same kind dropped).
    pg_fresh() {
        local db="mirror_bench_${1}_$$_$(date +%s%N)"
        pg_drop
        psql -qtA "$PG_ADMIN_URL" -c "CREATE DATABASE $db" >/dev/null
        printf '%s\n' "$db" >>"$PG_DBS"
        printf '%s/%s\n' "${PG_ADMIN_URL%/*}" "$db"
    }
    log "PostgreSQL: mirror vs import"
    mirror_vs_import postgres pg_fresh pg_count
    pg_drop
fi

# --- 3. Another operation's polls during a catch-up inside `serve` -------------------------
if [ -n "${ONLY_PG:-}" ]; then
    stop_bg "$FAKE_PID"
    rm -f "$DIR/rows.ndjson"
    exit 0
fi
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

# Each round: polls without a catch-up, then a new mirror (copy1, copy2, …: every round copies
# all ROWS rows again) and the polls once its catch-up has begun (its first window committed),
# then the wait for the catch-up and the indexer to finish. A final measurement without closes
# the series; each "during" is compared with the mean of the two "without" around it.
# The fake upstream runs at nice 10 here: in production it is another machine, and its CPU (the
# answers' bytes, the loopback's kernel work) is not the mirror's to pay.
renice -n 10 -p "$FAKE_PID" >/dev/null
mirror_of() { sqlite3 "$SERVED" "SELECT IFNULL(MAX(rows_inserted), 0), MAX(checkpoint IS NOT NULL) FROM mirrors m JOIN operations o ON o.id = m.operation_id WHERE o.name = '$1'" | tr '|' ' '; }
: >"$DIR/polls.txt"
log "$(date +%T) waiting for serve's word-search indexer"
wait_indexed
WITHOUT=$(polls without)
for round in $(seq 1 "$POLL_REPS"); do
    op="copy$round"
    "$VOXTRAIL" --database "sqlite://$SERVED" mirror set --operation "$op" --url "$UPSTREAM" \
        --since "$SINCE" --window "$WINDOW" --timezone UTC --token-file "$DIR/token" 2>/dev/null
    for _ in $(seq 1 300); do
        read -r n started < <(mirror_of "$op")
        [ "${started:-0}" = 1 ] && break
        sleep 0.1
    done
    read -r at_start _ < <(mirror_of "$op")
    log "$(date +%T) round $round: polls during the catch-up of $op (from $at_start rows)"
    t0=$(now_s)
    DURING=$(polls "during-$round")
    t1=$(now_s)
    read -r at_end _ < <(mirror_of "$op")
    for _ in $(seq 1 3000); do
        read -r n _ < <(mirror_of "$op")
        [ "$n" -ge "$ROWS" ] && break
        sleep 0.2
    done
    t2=$(now_s)
    [ "$n" -ge "$ROWS" ] || { log "the catch-up of $op inside serve did not finish"; exit 1; }
    log "$(date +%T) round $round: catch-up done; waiting for the indexer"
    wait_indexed
    NEXT=$(polls without)
    printf '%s %s %s %s %s %s %s %s %s\n' "$round" "$WITHOUT" "$DURING" "$NEXT" "$at_start" \
        "$at_end" "$t0" "$t1" "$t2" >>"$DIR/polls.txt"
    WITHOUT=$NEXT
done
stop_bg "$SERVE_PID"
python3 - "$DIR/polls.txt" "$ROWS" "$CONNS" "$WINDOW" <<'PY' | tee -a "$DIR/results.txt"
import statistics, sys
rows, conns, window = int(sys.argv[2]), sys.argv[3], sys.argv[4]
ratios = []
for line in open(sys.argv[1]):
    r, b, d, a, s, e, t0, t1, t2 = line.split()
    b, d, a, t0, t1, t2 = map(float, (b, d, a, t0, t1, t2))
    s, e = int(s), int(e)
    ratio = d / ((b + a) / 2)
    ratios.append(ratio)
    note = "" if e < rows else "; the catch-up ended inside the measurement (diluted)"
    print(f"polls round {r} ({conns} connections, answers/s): without {b:.0f}, during the catch-up "
          f"{d:.0f}, without {a:.0f}: {ratio:.2f}; the catch-up (--window {window}) committed "
          f"{e - s} rows in the {t1 - t0:.1f} s measured and all {rows} in {t2 - t0:.1f} s{note}")
print(f"polls during a catch-up / without: median {statistics.median(ratios):.2f} "
      f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
PY
stop_bg "$FAKE_PID"
grep -h 'requests=' "$DIR/fake.log" | tail -n 1 | sed 's/^/fake upstream: /' | tee -a "$DIR/results.txt"
rm -f "$DIR"/served.db* "$DIR/rows.ndjson"
