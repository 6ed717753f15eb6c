#!/usr/bin/env bash
# `voxtrail pull` by the change feed against `voxtrail pull` by windows, same run: ROWS rows
# (`voxtrail seed`, ~2.3 KB each) served by a release `voxtrail serve` on 127.0.0.1, each mode
# copying all of them into a fresh SQLite file, REPS times, alternating. Figures: rows/s of each
# (median) and feed / windows (target >= 1.0). Then the raw speed of the feed's pages: every page
# of the feed (limit 10,000) read with curl, one after the other, cursor to cursor (plus the
# last, empty page that says the end), against the same rows read with curl as 1-day report
# windows (the same bytes by the report endpoint): MB/s
# of JSON each (MB = 10^6 bytes; target >= 200 MB/s for the feed) and their ratio.
#
# Environment: VOXTRAIL_BIN (else built, release), ROWS (200000), REPS (3), PAGE (10000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-200000}
REPS=${REPS:-3}
PAGE=${PAGE:-10000}
VOXTRAIL=$(voxtrail_bin)
command -v sqlite3 >/dev/null || { log "sqlite3 (the SQLite shell) is required"; exit 1; }

DIR="$OUT_DIR/feed_pull"
rm -rf "$DIR"
mkdir -p "$DIR"
SRC="sqlite://$DIR/source.db"

log "seeding $ROWS rows"
"$VOXTRAIL" --database "$SRC" operation create src --timezone UTC >/dev/null
"$VOXTRAIL" --database "$SRC" seed --operation src --count "$ROWS" --days 7 \
    --until 20261008000000 --seed 7 2>&1 | tail -n 1 >&2
TOKEN=$("$VOXTRAIL" --database "$SRC" token create --operation src --scope report \
    --daily-limit 100000000 2>/dev/null)
JSON_BYTES=$(sqlite3 "$DIR/source.db" 'SELECT SUM(json_len) FROM interactions')
cat "$DIR/source.db" >/dev/null

PORT=$(free_port)
start_bg "$DIR/serve.log" "$VOXTRAIL" --database "$SRC" serve --listen "127.0.0.1:$PORT"
SERVE_PID=$BG_PID
wait_port "$PORT" "$SERVE_PID"
BASE="http://127.0.0.1:$PORT"

now_s() { printf '%s\n' "$EPOCHREALTIME"; }

# pull_once MODE N: a fresh SQLite copy by MODE; prints its seconds.
pull_once() {
    local mode=$1 n=$2 db="$DIR/copy-$1-$2.db" t0 t1 got
    rm -f "$db" "$db-wal" "$db-shm"
    t0=$(now_s)
    "$VOXTRAIL" pull --url "$BASE" --token "$TOKEN" --since 20260930000000 \
        --until 20261008000000 --timezone UTC --mode "$mode" --page "$PAGE" \
        --into "sqlite://$db" 2>"$DIR/pull-$mode-$n.log"
    t1=$(now_s)
    got=$(sqlite3 "$db" 'SELECT COUNT(*) FROM pulled_rows')
    [ "$got" = "$ROWS" ] || { log "pull --mode $mode copied $got rows, not $ROWS"; exit 1; }
    rm -f "$db" "$db-wal" "$db-shm"
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

# Pages and windows are written to a tmpfs file when there is one (the same file for both), so
# the disk is not what is measured; the loop spawns curl and tail only.
SCRATCH="$DIR/answer"
[ -d /dev/shm ] && [ -w /dev/shm ] && SCRATCH="/dev/shm/voxtrail-feed-pull-$$"
trap 'rm -f "$SCRATCH"; bench_cleanup' EXIT

# feed_pages: every feed page with curl, cursor to cursor, until the cursor comes back
# unchanged (the end of the feed); prints seconds and bytes.
feed_pages() {
    local cursor="" next t0 t1 bytes=0 size tail_text
    t0=$(now_s)
    while :; do
        size=$(curl -fsS -o "$SCRATCH" -w '%{size_download}' -H "wolkvox-token: $TOKEN" \
            "$BASE/api/v2/voxtrail/chat_12/feed?limit=$PAGE${cursor:+&after=$cursor}")
        bytes=$((bytes + size))
        tail_text=$(tail -c 64 "$SCRATCH")
        [[ $tail_text =~ \"cursor\":\"([0-9.]+)\" ]] || { log "a feed page without a cursor"; exit 1; }
        next=${BASH_REMATCH[1]}
        [ "$next" = "$cursor" ] && break
        cursor=$next
    done
    t1=$(now_s)
    printf '%s %s\n' "$(python3 -c "print(f'{$t1 - $t0:.3f}')")" "$bytes"
}

# report_windows: the same rows as 1-day report windows with curl; prints seconds and bytes.
report_windows() {
    local t0 t1 bytes=0 d size
    t0=$(now_s)
    for d in 0930 1001 1002 1003 1004 1005 1006 1007 1008; do
        size=$(curl -fsS -o "$SCRATCH" -w '%{size_download}' -H "wolkvox-token: $TOKEN" \
            "$BASE/api/v2/reports_manager.php?api=chat_12&date_ini=2026${d}000000&date_end=2026${d}235959")
        bytes=$((bytes + size))
    done
    t1=$(now_s)
    printf '%s %s\n' "$(python3 -c "print(f'{$t1 - $t0:.3f}')")" "$bytes"
}

: >"$DIR/times.txt"
for n in $(seq 1 "$REPS"); do
    for mode in feed windows; do
        s=$(pull_once "$mode" "$n")
        log "round $n: pull --mode $mode: $s s"
        printf 'pull %s %s\n' "$mode" "$s" >>"$DIR/times.txt"
    done
    read -r s b < <(feed_pages)
    log "round $n: curl feed pages: $s s, $b bytes"
    printf 'curl feed %s %s\n' "$s" "$b" >>"$DIR/times.txt"
    read -r s b < <(report_windows)
    log "round $n: curl report windows: $s s, $b bytes"
    printf 'curl windows %s %s\n' "$s" "$b" >>"$DIR/times.txt"
done
RSS=$(vm_hwm_kb "$SERVE_PID")
stop_bg "$SERVE_PID"

python3 - "$ROWS" "$JSON_BYTES" "$RSS" "$DIR/times.txt" <<'PY' | tee "$DIR/results.txt"
import statistics, sys
rows, json_bytes, rss = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pull, curl = {"feed": [], "windows": []}, {"feed": [], "windows": []}
for line in open(sys.argv[4]):
    kind, mode, secs, *rest = line.split()
    if kind == "pull":
        pull[mode].append(float(secs))
    else:
        curl[mode].append((float(secs), int(rest[0])))
print(f"{rows} rows, {json_bytes/1e6:.1f} MB of row JSON ({json_bytes/rows:.0f} B/row); medians of {len(pull['feed'])} runs")
f, w = statistics.median(pull["feed"]), statistics.median(pull["windows"])
print(f"pull --mode feed    -> fresh SQLite: {f:7.2f} s  {rows/f:>9,.0f} rows/s")
print(f"pull --mode windows -> fresh SQLite: {w:7.2f} s  {rows/w:>9,.0f} rows/s")
print(f"feed / windows: {w/f:.2f}   (target >= 1.0)")
cf = statistics.median(s for s, _ in curl["feed"]); bf = curl["feed"][0][1]
cw = statistics.median(s for s, _ in curl["windows"]); bw = curl["windows"][0][1]
print(f"curl, feed pages (limit 10000):  {cf:6.3f} s  {bf/cf/1e6:7.1f} MB/s of answers  {json_bytes/cf/1e6:7.1f} MB/s of rows   (target >= 200)")
print(f"curl, report windows (1 day):    {cw:6.3f} s  {bw/cw/1e6:7.1f} MB/s of answers  {json_bytes/cw/1e6:7.1f} MB/s of rows")
print(f"feed pages / report windows: {cw/cf:.2f}")
print(f"server peak RSS: {rss/1024:.0f} MB")
PY
