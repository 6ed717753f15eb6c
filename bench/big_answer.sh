#!/usr/bin/env bash
# One big answer: a window of op01 in the shared 1,000,000-row database holding just under
# 60,000 rows (the record limit), fetched with curl from voxtrail, next to the same bytes
# fetched with curl from `python3 -m http.server` (started here, serving a saved copy).
# Targets (bench/README.md): >= 400 MB/s end to end, no slower than 5x the static file server,
# peak RSS (VmHWM) of the server < 100 MB. A gzip (--compressed) fetch is an extra line.
#
# Environment: VOXTRAIL_BIN (else built), REPS (fetches per server, default 5), ROWS (default 60000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REPS=${REPS:-5}
ROWS=${ROWS:-60000}
VOXTRAIL=$(voxtrail_bin)
ensure_polls_db
TOKEN=$(awk '$1 == "op01" {print $2; exit}' "$POLLS_TOKENS")

# The widest window starting at op01's first row with at most $ROWS rows.
read -r INI END N < <(python3 - "$POLLS_DB" "$ROWS" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
want = int(sys.argv[2])
op = db.execute("SELECT id FROM operations WHERE name = 'op01'").fetchone()[0]
ts = [r[0] for r in db.execute(
    "SELECT local_ts FROM interactions WHERE operation_id = ? ORDER BY local_ts LIMIT ?", (op, want + 1))]
ini = ts[0]
# End one row short of the first timestamp that would push the count past the limit.
stop = ts[want] if len(ts) > want else None
end = max(t for t in ts[:want] if stop is None or t < stop)
n = db.execute("SELECT COUNT(*) FROM interactions WHERE operation_id = ? AND local_ts BETWEEN ? AND ?",
               (op, ini, end)).fetchone()[0]
print(ini, end, n)
PY
)
log "window $INI..$END of op01: $N rows"

PORT=$(free_port)
start_bg "$OUT_DIR/big.voxtrail.log" "$VOXTRAIL" --database "sqlite://$POLLS_DB" serve --listen "127.0.0.1:$PORT"
VPID=$BG_PID
wait_port "$PORT" "$VPID"
URL="http://127.0.0.1:$PORT/api/v2/reports_manager.php?api=chat_12&date_ini=$INI&date_end=$END"

STATIC_DIR="$OUT_DIR/static"
mkdir -p "$STATIC_DIR"
code=$(curl -s -o "$STATIC_DIR/big.json" -w '%{http_code}' -H "wolkvox-token: $TOKEN" "$URL")
[ "$code" = 200 ] || { log "voxtrail answered HTTP $code: $(head -c 300 "$STATIC_DIR/big.json")"; exit 1; }
BYTES=$(stat -c %s "$STATIC_DIR/big.json")
head -c 80 "$STATIC_DIR/big.json" >&2
log " … ($BYTES bytes)"

SPORT=$(free_port)
start_bg "$OUT_DIR/big.static.log" python3 -m http.server "$SPORT" --bind 127.0.0.1 --directory "$STATIC_DIR"
SPID=$BG_PID
wait_port "$SPORT" "$SPID"
SURL="http://127.0.0.1:$SPORT/big.json"

RES="$OUT_DIR/big.results.txt"
: >"$RES"
# fetch LABEL URL [curl options...]: appends "LABEL code bytes seconds" to $RES
fetch() {
    local label=$1 url=$2
    shift 2
    printf '%s %s\n' "$label" "$(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$@" "$url")" >>"$RES"
}
for _ in $(seq 1 "$REPS"); do
    fetch voxtrail "$URL" -H "wolkvox-token: $TOKEN"
    fetch static "$SURL"
    fetch voxtrail-gzip "$URL" -H "wolkvox-token: $TOKEN" --compressed
done
HWM_KB=$(vm_hwm_kb "$VPID")
STATIC_HWM_KB=$(vm_hwm_kb "$SPID")
stop_bg "$VPID"
stop_bg "$SPID"

# Memory must not grow with the answer: a second server whose record limit admits all of
# op01 (100,000 rows, under the 256 MB limit), one plain and one gzip fetch, then its VmHWM.
printf '[limits]\nmax_records = 100000\n' >"$OUT_DIR/big.toml"
PORT=$(free_port)
start_bg "$OUT_DIR/big.voxtrail-all.log" "$VOXTRAIL" --database "sqlite://$POLLS_DB" serve \
    --listen "127.0.0.1:$PORT" --config "$OUT_DIR/big.toml"
VPID=$BG_PID
wait_port "$PORT" "$VPID"
ALL_URL="http://127.0.0.1:$PORT/api/v2/reports_manager.php?api=chat_12&date_ini=$POLLS_FROM&date_end=$POLLS_UNTIL"
fetch voxtrail-all "$ALL_URL" -H "wolkvox-token: $TOKEN"
fetch voxtrail-all-gzip "$ALL_URL" -H "wolkvox-token: $TOKEN" --compressed
ALL_HWM_KB=$(vm_hwm_kb "$VPID")

python3 - "$RES" "$BYTES" "$N" "$HWM_KB" "$STATIC_HWM_KB" "$ALL_HWM_KB" <<'PY'
import statistics, sys
res, json_bytes, rows, hwm, shwm, ahwm = sys.argv[1], *map(int, sys.argv[2:7])
runs = {}
for line in open(res):
    label, code, size, secs = line.split()
    if code != "200":
        sys.exit(f"{label}: HTTP {code}")
    runs.setdefault(label, []).append((int(size), float(secs)))
def med(label):
    return statistics.median(s for _, s in runs[label])
v, s, g = med("voxtrail"), med("static"), med("voxtrail-gzip")
for label in ("voxtrail", "static"):
    assert all(size == json_bytes for size, _ in runs[label]), f"{label}: unexpected size"
gz = statistics.median(size for size, _ in runs["voxtrail-gzip"])
print(f"big answer: {rows} rows, {json_bytes/1e6:.1f} MB of JSON; median of {len(runs['voxtrail'])} curl fetches each")
print(f"{'':<30}{'seconds':>9}{'MB/s':>9}")
print(f"{'voxtrail':<30}{v:>9.3f}{json_bytes/v/1e6:>9.1f}   target >= 400 MB/s")
print(f"{'python3 -m http.server (file)':<30}{s:>9.3f}{json_bytes/s/1e6:>9.1f}")
print(f"ratio voxtrail time / static time: {v/s:.2f}x   target <= 5x")
print(f"{'voxtrail --compressed':<30}{g:>9.3f}{json_bytes/g/1e6:>9.1f}   (JSON MB/s; {gz/1e6:.1f} MB on the wire, {json_bytes/gz:.1f}:1)")
print(f"voxtrail peak RSS (VmHWM): {hwm/1024:.1f} MB   target < 100 MB   (static server: {shwm/1024:.1f} MB)")
(asize, asecs), = runs["voxtrail-all"]
print(f"all 100,000 rows of op01 ({asize/1e6:.1f} MB, record limit raised): {asecs:.3f} s, {asize/asecs/1e6:.1f} MB/s"
      f" (gzip {runs['voxtrail-all-gzip'][0][1]:.3f} s); peak RSS {ahwm/1024:.1f} MB   target < 100 MB")
print("all fetches (seconds): " + "; ".join(f"{k} " + " ".join(f"{t:.3f}" for _, t in r) for k, r in runs.items()))
PY
machine_line
