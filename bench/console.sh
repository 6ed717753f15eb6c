#!/usr/bin/env bash
# Console, on the shared 1,000,000-row bench database (bench/lib.sh: 10 operations × 100,000 rows)
# plus the largest operation, `bench`: ~220,000 rows over 31 days (`voxtrail seed`). Then, for
# each binary measured, through the real server with a signed-in console session: the overview
# of the 31 days (5 runs, curl time on 127.0.0.1), word searches on the interactions page
# (p50/p95), and the size of each page. The server's indexer (word search, and on the binaries
# that have them the overview's counts) runs after the server starts; searches and the overview
# are timed at once (the indexer catching up: what is not indexed is scanned) and once its
# watermarks reached the last row (the time to catch up is printed; needs `sqlite3`).
#
# With VOXTRAIL_BIN_BEFORE set, the binary of the commit before a change is measured first on
# its own copy of the same rows, then the binary after, in the same run, and the ratios printed.
# The base copy is indexed once by the first binary's server (so the one after only catches up
# with what it adds); each binary serves its own copy, migrated by it.
#
# Environment: VOXTRAIL_BIN (else built), VOXTRAIL_BIN_BEFORE (optional), COUNT (default
# 220000), SEARCHES (default 40).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-220000}
SEARCHES=${SEARCHES:-40}
VOXTRAIL=$(voxtrail_bin)
AFTER=$VOXTRAIL
BEFORE=${VOXTRAIL_BIN_BEFORE:-}
FIRST=${BEFORE:-$AFTER}
command -v sqlite3 >/dev/null || { log "sqlite3 is required"; exit 1; }

# The base: the shared database, then the `bench` operation seeded with the first binary.
VOXTRAIL=$FIRST ensure_polls_db
BASE="$OUT_DIR/console.base.db"
BASE_KEY="$(cat "$OUT_DIR/polls.key") bench=$COUNT first=$(sha256sum "$FIRST" | cut -c1-16)"
if [ ! -f "$BASE" ] || [ "$(cat "$BASE.key" 2>/dev/null)" != "$BASE_KEY" ]; then
    rm -f "$BASE" "$BASE-wal" "$BASE-shm" "$BASE.key" "$BASE.lock"
    sqlite3 "$POLLS_DB" ".backup '$BASE'"
    "$FIRST" --database "sqlite://$BASE" operation create bench --timezone America/Bogota >/dev/null
    t0=$EPOCHREALTIME
    run_fg "$FIRST" --database "sqlite://$BASE" seed --operation bench --count "$COUNT" --days 31 \
        --until 20261031235959 --seed 1 2>"$OUT_DIR/console.seed.log"
    t1=$EPOCHREALTIME
    python3 -c "import sys; n,a,b=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print(f'seed of bench: {n} rows over 31 days in {b-a:.2f} s, {n/(b-a):,.0f} rows/s')" "$COUNT" "$t0" "$t1"
    # Indexed once, by the first binary's server.
    PORT=$(free_port)
    start_bg "$OUT_DIR/console.index.log" "$FIRST" --database "sqlite://$BASE" serve --listen "127.0.0.1:$PORT"
    wait_port "$PORT" "$BG_PID"
    t0=$EPOCHREALTIME
    while [ "$(sqlite3 "$BASE" "SELECT (SELECT MAX(seq) FROM interactions) - (SELECT indexed_upto FROM console_fts_state)")" != "0" ]; do
        sleep 1
    done
    t1=$EPOCHREALTIME
    stop_bg "$BG_PID"
    python3 -c "import sys; print(f'base indexed for word search by the first binary in {float(sys.argv[2])-float(sys.argv[1]):.0f} s')" "$t0" "$t1"
    printf '%s\n' "$BASE_KEY" >"$BASE.key"
fi
log "base: $(du -h "$BASE" | cut -f1), $(sqlite3 "$BASE" 'SELECT COUNT(*) FROM interactions') rows, bench: $(sqlite3 "$BASE" "SELECT COUNT(*) FROM interactions WHERE operation_id = (SELECT id FROM operations WHERE name = 'bench')") rows"

WORDS=(factura pedido envío garantía titularidad devolución diagnóstico radicado invoice refund shipping installment)
OVERVIEW="/console/?from=2026-10-01&to=2026-10-31"

# measure LABEL BINARY: one binary on its own copy of the base; figures into $OUT_DIR/console.LABEL.
measure() {
    local label=$1 bin=$2 db="$OUT_DIR/console.$1.db" port server base cookie token out
    out="$OUT_DIR/console.$label.txt"
    rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
    sqlite3 "$BASE" ".backup '$db'"
    "$bin" --database "sqlite://$db" migrate >/dev/null
    token=$("$bin" --database "sqlite://$db" token create --operation bench --scope console 2>/dev/null)
    cat "$db" >/dev/null
    port=$(free_port)
    start_bg "$OUT_DIR/console.$label.server.log" "$bin" --database "sqlite://$db" serve --listen "127.0.0.1:$port"
    server=$BG_PID
    wait_port "$port" "$server"
    local t_up=$EPOCHREALTIME
    base="http://127.0.0.1:$port"
    cookie=$(curl -s -o /dev/null -D - -H "Origin: $base" --data-urlencode "token=$token" "$base/console/login" \
        | awk -F'[ ;]' 'tolower($1)=="set-cookie:" {print $2}')
    [ -n "$cookie" ] || { log "sign-in failed"; exit 1; }
    get() { curl -s -o /dev/null -w '%{time_total} %{size_download}\n' -H "Cookie: $cookie" "$base$1"; }
    searches() {
        local i w
        for i in $(seq 1 "$SEARCHES"); do
            w=${WORDS[$((i % ${#WORDS[@]}))]}
            get "/console/interactions?from=2026-10-01&to=2026-10-31&q=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$w")"
        done
    }
    # Rows not yet indexed (word search) plus rows not yet counted (overview, when the schema has
    # the counts).
    local counts="0"
    if [ -n "$(sqlite3 "$db" "SELECT name FROM sqlite_master WHERE name = 'console_counts_state'")" ]; then
        counts="(SELECT (SELECT MAX(seq) FROM interactions) - counted_upto FROM console_counts_state)"
    fi
    behind() {
        sqlite3 "$db" "SELECT (SELECT MAX(seq) FROM interactions) - (SELECT indexed_upto FROM console_fts_state) + $counts"
    }
    local ov_early sr_early t_caught ov sr sizes first one
    ov_early=$(get "$OVERVIEW")
    sr_early=$(searches)
    while [ "$(behind)" != "0" ]; do sleep 0.5; done
    t_caught=$EPOCHREALTIME
    ov=$(for _ in 1 2 3 4 5; do get "$OVERVIEW"; done)
    sr=$(searches)
    sizes=$(for p in "/console/login" "$OVERVIEW" "/console/interactions?from=2026-10-01&to=2026-10-31" "/console/tokens"; do
        printf '%s %s\n' "$p" "$(get "$p" | cut -d' ' -f2)"
    done)
    first=$(curl -s -H "Cookie: $cookie" "$base/console/interactions?from=2026-10-01&to=2026-10-31" \
        | grep -o 'href="/console/interactions/[^"]*"' | head -1 | cut -d'"' -f2)
    one=$(get "$first" | cut -d' ' -f2)
    stop_bg "$server"
    python3 - "$label" "$ov" "$sr" "$sizes" "$one" "$sr_early" "$ov_early" "$t_up" "$t_caught" >"$out" <<'PY'
import sys
label, ov, sr, sizes, one, se, oe, up, caught = sys.argv[1:]
ms = lambda s: sorted(float(l.split()[0]) * 1000 for l in s.splitlines())
ov, sr, se, oe = ms(ov), ms(sr), ms(se), ms(oe)
p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
print(f"[{label}] indexer caught up {float(caught)-float(up):.1f} s after the server started")
print(f"[{label}] overview, 31 days, while the indexer catches up: {oe[0]:.0f} ms (1 run)")
print(f"[{label}] overview, 31 days: median {p(ov, .5):.0f} ms, best {ov[0]:.0f} ms, worst {ov[-1]:.0f} ms (5 runs)")
print(f"[{label}] word search, 31 days, 50 rows, while the indexer catches up: p50 {p(se, .5):.0f} ms, p95 {p(se, .95):.0f} ms ({len(se)} searches)")
print(f"[{label}] word search, 31 days, 50 rows, all indexed: p50 {p(sr, .5):.0f} ms, p95 {p(sr, .95):.0f} ms ({len(sr)} searches)")
for line in sizes.splitlines():
    path, size = line.rsplit(" ", 1)
    print(f"[{label}] page {path}: {int(size):,} bytes")
print(f"[{label}] page one interaction: {int(one):,} bytes")
print(f"#ov {p(ov, .5)}")
print(f"#sr {p(sr, .95)}")
PY
    grep -v '^#' "$out"
    rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
}

if [ -n "$BEFORE" ]; then
    measure before "$BEFORE"
fi
measure after "$AFTER"
if [ -n "$BEFORE" ]; then
    python3 - "$OUT_DIR/console.before.txt" "$OUT_DIR/console.after.txt" <<'PY'
import sys
def figs(path):
    return {l.split()[0]: float(l.split()[1]) for l in open(path) if l.startswith("#")}
b, a = figs(sys.argv[1]), figs(sys.argv[2])
print(f"overview median: before {b['#ov']:.0f} ms, after {a['#ov']:.0f} ms, after/before {a['#ov']/b['#ov']:.3f}")
print(f"word search p95: before {b['#sr']:.0f} ms, after {a['#sr']:.0f} ms, after/before {a['#sr']/b['#sr']:.3f}")
PY
fi
machine_line
