# Shared helpers for the bench/*.sh scripts. Sourced, not run.
# Every generated file goes under bench/out/ (git-ignored); every server started here is
# killed when the script exits.

shopt -s inherit_errexit

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out"
mkdir -p "$OUT_DIR"

BENCH_PIDS=()

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }

# The voxtrail binary: $VOXTRAIL_BIN, else built (release) into ${CARGO_TARGET_DIR:-target}.
voxtrail_bin() {
    if [ -n "${VOXTRAIL_BIN:-}" ]; then
        printf '%s\n' "$VOXTRAIL_BIN"
        return
    fi
    (cd "$ROOT_DIR" && cargo build --release -q -p voxtrail) >&2 || {
        log "building voxtrail failed (set VOXTRAIL_BIN to use a built binary)"
        return 1
    }
    printf '%s\n' "${CARGO_TARGET_DIR:-$ROOT_DIR/target}/release/voxtrail"
}

# The load generator: $LOADGEN_BIN, else built (release) like voxtrail.
loadgen_bin() {
    if [ -n "${LOADGEN_BIN:-}" ]; then
        printf '%s\n' "$LOADGEN_BIN"
        return
    fi
    (cd "$ROOT_DIR" && cargo build --release -q -p voxtrail-loadgen) >&2 || {
        log "building loadgen failed (set LOADGEN_BIN to use a built binary)"
        return 1
    }
    printf '%s\n' "${CARGO_TARGET_DIR:-$ROOT_DIR/target}/release/loadgen"
}

# A TCP port on 127.0.0.1 that is free right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT PID: waits until 127.0.0.1:PORT accepts connections (or PID dies / 60 s pass).
wait_port() {
    local port=$1 pid=$2 i
    for i in $(seq 1 600); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited before listening on port $port"
            return 1
        fi
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing listens on port $port after 60 s"
    return 1
}

# start_bg LOGFILE CMD...: starts CMD in the background (stdout+stderr to LOGFILE), records
# its PID for the exit trap and in $BG_PID.
start_bg() {
    local logfile=$1
    shift
    "$@" >"$logfile" 2>&1 &
    BG_PID=$!
    BENCH_PIDS+=("$BG_PID")
}

# run_fg CMD...: runs CMD as if in the foreground, but interruptible: a signal to the script
# runs the exit trap at once (which also stops CMD) instead of after CMD ends.
run_fg() {
    local pid rc=0
    "$@" &
    pid=$!
    BENCH_PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

forget_pid() {
    local keep=() p
    for p in "${BENCH_PIDS[@]:-}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    BENCH_PIDS=("${keep[@]:-}")
}

# stop_bg PID: stops one server started with start_bg.
stop_bg() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

# vm_hwm_kb PID: the peak resident set size of a process, in kB.
vm_hwm_kb() {
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status"
}

machine_line() {
    printf 'date: %s; machine: %s cores (%s), %s; kernel %s\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
        "$(awk '/^MemTotal/ {printf "%.0f GB RAM", $2/1048576}' /proc/meminfo)" "$(uname -r)"
}

# seed_fingerprint: a hash of what `$VOXTRAIL seed` generates (a few rows into a scratch
# database), so cached data is regenerated exactly when the generator changes.
seed_fingerprint() {
    local db="$OUT_DIR/fingerprint.db"
    rm -f "$db" "$db-wal" "$db-shm"
    "$VOXTRAIL" --database "sqlite://$db" operation create op01 >/dev/null
    "$VOXTRAIL" --database "sqlite://$db" seed --operation op01 --count 300 --days 7 \
        --until 20261008000000 --seed 42 >/dev/null 2>&1
    sqlite3 "$db" 'SELECT quote(json) FROM interactions ORDER BY seq' | sha256sum | cut -c1-16
    rm -f "$db" "$db-wal" "$db-shm"
}

# The shared benchmark database: 10 operations (op01…op10) × 100,000 seeded rows over 7 days
# ending 2026-10-08 00:00:00, 8 report tokens per operation (`OPERATION TOKEN` lines in
# $POLLS_TOKENS). Kept in bench/out/ and reused while the seed parameters and the rows the
# generator produces are unchanged. Needs $VOXTRAIL.
POLLS_OPS=10
POLLS_COUNT=100000
POLLS_DAYS=7
POLLS_FROM=20261001000000
POLLS_UNTIL=20261008000000
POLLS_SEED=42
POLLS_TOKENS_PER_OP=8
POLLS_DB="$OUT_DIR/polls.db"
POLLS_TOKENS="$OUT_DIR/polls.tokens"

ensure_polls_db() {
    local keyfile="$OUT_DIR/polls.key" key i op tok
    key="ops=$POLLS_OPS count=$POLLS_COUNT days=$POLLS_DAYS until=$POLLS_UNTIL seed=$POLLS_SEED"
    key="$key tokens=$POLLS_TOKENS_PER_OP gen=$(seed_fingerprint)"
    if [ -f "$POLLS_DB" ] && [ -f "$POLLS_TOKENS" ] && [ "$(cat "$keyfile" 2>/dev/null)" = "$key" ]; then
        log "reusing $POLLS_DB ($key)"
    else
        log "seeding $POLLS_DB: $POLLS_OPS operations x $POLLS_COUNT rows over $POLLS_DAYS days until $POLLS_UNTIL"
        rm -f "$POLLS_DB" "$POLLS_DB-wal" "$POLLS_DB-shm" "$POLLS_TOKENS" "$keyfile"
        : >"$POLLS_TOKENS.tmp"
        for i in $(seq 1 "$POLLS_OPS"); do
            op=$(printf 'op%02d' "$i")
            "$VOXTRAIL" --database "sqlite://$POLLS_DB" operation create "$op" >/dev/null
            "$VOXTRAIL" --database "sqlite://$POLLS_DB" seed --operation "$op" --count "$POLLS_COUNT" \
                --days "$POLLS_DAYS" --until "$POLLS_UNTIL" --seed "$POLLS_SEED" 2>&1 | tail -n 1 >&2
            for _ in $(seq 1 "$POLLS_TOKENS_PER_OP"); do
                tok=$("$VOXTRAIL" --database "sqlite://$POLLS_DB" token create --operation "$op" \
                    --description bench --daily-limit 100000000 2>/dev/null)
                printf '%s %s\n' "$op" "$tok" >>"$POLLS_TOKENS.tmp"
            done
        done
        mv "$POLLS_TOKENS.tmp" "$POLLS_TOKENS"
        printf '%s\n' "$key" >"$keyfile"
    fi
    log "database: $(du -h "$POLLS_DB" | cut -f1), $(sqlite3 "$POLLS_DB" 'select count(*) from interactions' 2>/dev/null || echo '?') rows"
    # Every server measured starts with the file in the page cache.
    cat "$POLLS_DB" >/dev/null
}

# ensure_before_after_dbs BEFORE_BIN AFTER_BIN: the shared database (ensure_polls_db, seeded by
# BEFORE_BIN: a binary from before a change may refuse a newer schema) as two copies, one per
# binary, in $BEFORE_DB and $AFTER_DB. The after copy is migrated by AFTER_BIN first. Both are
# VACUUMed, so both binaries read tables laid out alike: a migration that fills a new column
# rewrites every row once (the integrator additions' `row_hash` and `feed_pos`), which leaves an
# upgraded table's pages out of order (~20 % slower big answers) until a VACUUM.
# Reused while newer than polls.db.
ensure_before_after_dbs() {
    local before_bin=$1 after_bin=$2 tmp
    local saved=${VOXTRAIL:-}
    VOXTRAIL=$before_bin
    ensure_polls_db
    VOXTRAIL=$saved
    BEFORE_DB="$OUT_DIR/polls.before.db"
    AFTER_DB="$OUT_DIR/polls.after.db"
    if [ ! -f "$BEFORE_DB" ] || [ "$POLLS_DB" -nt "$BEFORE_DB" ]; then
        log "copying $POLLS_DB to $BEFORE_DB (VACUUM INTO)"
        rm -f "$BEFORE_DB" "$BEFORE_DB-wal" "$BEFORE_DB-shm"
        sqlite3 "$POLLS_DB" "VACUUM INTO '$BEFORE_DB'"
    fi
    if [ ! -f "$AFTER_DB" ] || [ "$POLLS_DB" -nt "$AFTER_DB" ]; then
        log "copying $POLLS_DB to $AFTER_DB (migrated by the binary after, then VACUUM INTO)"
        tmp="$OUT_DIR/polls.migrating.db"
        rm -f "$AFTER_DB" "$AFTER_DB-wal" "$AFTER_DB-shm" "$tmp" "$tmp-wal" "$tmp-shm"
        sqlite3 "$POLLS_DB" ".backup '$tmp'"
        "$after_bin" --database "sqlite://$tmp" migrate >&2
        sqlite3 "$tmp" "VACUUM INTO '$AFTER_DB'"
        rm -f "$tmp" "$tmp-wal" "$tmp-shm"
    fi
    "$after_bin" --database "sqlite://$AFTER_DB" migrate >&2
    cat "$BEFORE_DB" "$AFTER_DB" >/dev/null
}

# sqlite3_import_baseline DB CSV PAGE_SIZE ROWS: the sqlite3 shell's own `.import` of CSV (the
# interactions table's columns) into a fresh table with voxtrail's columns, indexes and page
# size, durable (WAL, synchronous=FULL, one transaction). Only the .import itself runs between
# the caller's clock readings' neighbours: the empty table is created first (and `sync`ed).
sqlite3_import_baseline() {
    local db=$1 csv=$2 page_size=$3 rows=$4 n
    rm -f "$db" "$db-wal" "$db-shm"
    sqlite3 "$db" >/dev/null <<SQL
PRAGMA page_size=$page_size;
PRAGMA journal_mode=WAL;
CREATE TABLE interactions (
    seq          INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL,
    conn_id      TEXT NOT NULL,
    local_ts     INTEGER NOT NULL,
    json_len     INTEGER NOT NULL,
    json         BLOB NOT NULL
);
CREATE UNIQUE INDEX interactions_conn ON interactions(operation_id, conn_id);
CREATE INDEX interactions_window ON interactions(operation_id, local_ts, seq, json_len);
SQL
    sync
    # .import runs in one transaction; synchronous=FULL and cache size as voxtrail's writer.
    sqlite3 "$db" >/dev/null <<SQL
PRAGMA synchronous=FULL;
PRAGMA cache_size=-65536;
.import --csv --skip 1 $csv interactions
SQL
    n=$(sqlite3 "$db" 'select count(*) from interactions')
    [ "$n" = "$rows" ] || { log "sqlite3 stored $n rows, expected $rows"; exit 1; }
}
