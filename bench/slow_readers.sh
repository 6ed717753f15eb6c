#!/usr/bin/env bash
# Slow readers, memory and gzip against other tenants: the binary under test next to a baseline
# binary (VOXTRAIL_BIN_BEFORE, the build of the commit before the change), in the same run, on
# the shared 1,000,000-row database. For each binary, each on a freshly started server:
#   1. polls: answers/s, p50, p99 of 32 keep-alive connections polling random 5-minute windows
#      (bench/loadgen), then the server's peak RSS (VmHWM) — the memory of 32 concurrent polls;
#   2. slow readers: SLOW (600) connections each asking op01 for one day (~14,000 rows, ~35 MB)
#      and reading ~2 KB/s through a 4 KB receive buffer (one token, concurrency limit raised);
#      meanwhile another tenant polls (tokens of op02..op10, fresh connections, one at a time):
#      its p50/p99/max, answers, and polls that got no answer within POLL_TIMEOUT s;
#   3. gzip: two clients fetch ~107 MB answers (3 days of op01, record limit raised) with
#      `curl --compressed` in a loop; meanwhile 1 connection polls with the tokens of
#      op02..op10 (loadgen): p50/max.
# Targets: 2. p50 in ms, max <= 3 s; 1. RSS <= 64 MB and answers/s within 10 % of before;
# 3. p50 <= 10 ms, max <= 100 ms (2 cores).
#
# Environment: VOXTRAIL_BIN (else built), VOXTRAIL_BIN_BEFORE (default
# /work/before-target/release/voxtrail), LOADGEN_BIN (else built), DURATION (s per polls run, 10),
# ROUNDS (polls runs per binary, best kept; 2), SLOW (600), SLOW_SECS (s of polls among slow
# readers, 15), POLL_TIMEOUT (s, 40), GZIP_SECS (s, 10).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
SLOW=${SLOW:-600}
SLOW_SECS=${SLOW_SECS:-15}
POLL_TIMEOUT=${POLL_TIMEOUT:-40}
GZIP_SECS=${GZIP_SECS:-10}
AFTER=$(voxtrail_bin)
BEFORE=${VOXTRAIL_BIN_BEFORE:-/work/before-target/release/voxtrail}
[ -x "$BEFORE" ] || { log "no baseline binary at $BEFORE (set VOXTRAIL_BIN_BEFORE)"; exit 1; }
LOADGEN=$(loadgen_bin)
VOXTRAIL=$AFTER
ensure_polls_db

SLOW_TOKEN=$(awk '$1 == "op01" {print $2; exit}' "$POLLS_TOKENS")
OTHER_TOKENS=$(awk '$1 != "op01" {print $2}' "$POLLS_TOKENS" | paste -sd, -)
awk '$1 != "op01"' "$POLLS_TOKENS" >"$OUT_DIR/slow.other.tokens"
DAY="/api/v2/reports_manager.php?api=chat_12&date_ini=20261001000000&date_end=20261001235959"
THREE_DAYS="/api/v2/reports_manager.php?api=chat_12&date_ini=20261001000000&date_end=20261003235959"
printf '[limits]\nconcurrent_per_token = %d\nmax_records = 100000\n' $((SLOW + 10)) >"$OUT_DIR/slow.toml"

RES="$OUT_DIR/slow_readers.results.jsonl"
: >"$RES"

# serve LABEL BIN: a fresh server on a free port ($PORT, $BG_PID)
serve() {
    PORT=$(free_port)
    start_bg "$OUT_DIR/slow.$1.log" "$2" --database "sqlite://$POLLS_DB" serve \
        --listen "127.0.0.1:$PORT" --config "$OUT_DIR/slow.toml"
    wait_port "$PORT" "$BG_PID"
}

# emit LABEL FIGURE JSON: one result line
emit() {
    python3 -c 'import json,sys; d=json.loads(sys.argv[3]); d.update(label=sys.argv[1], figure=sys.argv[2]); print(json.dumps(d))' "$1" "$2" "$3" >>"$RES"
}

for label in before after; do
    if [ "$label" = before ]; then BIN=$BEFORE; else BIN=$AFTER; fi
    log "== $label: $BIN"

    for round in $(seq 1 "$ROUNDS"); do
        serve "$label" "$BIN"
        out=$(run_fg "$LOADGEN" --addr "127.0.0.1:$PORT" --tokens "$POLLS_TOKENS" --connections 32 \
            --duration "$DURATION" --warmup 2 --from "$POLLS_FROM" --to "$POLLS_UNTIL" --window-secs 300 \
            --seed "$round" --label "$label")
        # Peak RSS, and the server's CPU time per answer (less noisy than answers/s on a
        # shared machine: it does not depend on the share of the cores the server gets).
        ticks=$(awk '{print $14 + $15}' "/proc/$BG_PID/stat")
        emit "$label" polls "$(python3 -c 'import json,os,sys; d=json.loads(sys.argv[1]); d["rss_kb"]=int(sys.argv[2]); d["cpu_us_per_answer"]=int(sys.argv[3])/os.sysconf("SC_CLK_TCK")*1e6/max(1,d["answers"]); print(json.dumps(d))' "$out" "$(vm_hwm_kb "$BG_PID")" "$ticks")"
        stop_bg "$BG_PID"
    done

    serve "$label" "$BIN"
    log "$SLOW slow readers, another tenant polling for $SLOW_SECS s"
    out=$(run_fg python3 "$BENCH_DIR/slow_readers.py" 127.0.0.1 "$PORT" "$SLOW_TOKEN" "$DAY" "$OTHER_TOKENS" \
        "$SLOW" 3 "$SLOW_SECS" "$POLL_TIMEOUT" "$POLLS_FROM" "$POLLS_UNTIL")
    emit "$label" slow "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["rss_kb"]=int(sys.argv[2]); print(json.dumps(d))' "$out" "$(vm_hwm_kb "$BG_PID")")"
    stop_bg "$BG_PID"

    serve "$label" "$BIN"
    log "two ~107 MB gzip answers streaming, another token polling for $GZIP_SECS s"
    GZ_PIDS=()
    for _ in 1 2; do
        (
            # Fetches start until the polls below end; the last one ends by itself.
            end=$((SECONDS + GZIP_SECS + 3))
            while [ "$SECONDS" -lt "$end" ]; do
                curl -s -o /dev/null --compressed --max-time 60 -H "wolkvox-token: $SLOW_TOKEN" \
                    -w '%{http_code} %{size_download} %{time_total}\n' "http://127.0.0.1:$PORT$THREE_DAYS" \
                    >>"$OUT_DIR/slow.gzip.$label.txt" || true
            done
        ) &
        GZ_PIDS+=("$!")
        BENCH_PIDS+=("$!")
    done
    sleep 2
    out=$(run_fg "$LOADGEN" --addr "127.0.0.1:$PORT" --tokens "$OUT_DIR/slow.other.tokens" --connections 1 \
        --duration "$GZIP_SECS" --warmup 1 --from "$POLLS_FROM" --to "$POLLS_UNTIL" --window-secs 300 \
        --seed 9 --label "$label")
    emit "$label" gzip "$out"
    for p in "${GZ_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
        forget_pid "$p"
    done
    stop_bg "$BG_PID"
done

python3 - "$RES" "$SLOW" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def get(label, fig):
    r = [x for x in rows if x["label"] == label and x["figure"] == fig]
    return max(r, key=lambda x: x.get("answers_per_s", 0)) if r else None
print(f"slow readers, memory and gzip vs another tenant (same run; before = VOXTRAIL_BIN_BEFORE)")
print(f"{'figure':<58}{'before':>12}{'after':>12}  target")
b, a = get("before", "polls"), get("after", "polls")
print(f"{'polls, 32 conns: answers/s (best round)':<58}{b['answers_per_s']:>12.0f}{a['answers_per_s']:>12.0f}  after >= 0.9x before ({a['answers_per_s']/b['answers_per_s']:.2f}x)")
print(f"{'polls, 32 conns: p50 / p99 ms':<58}{b['p50_ms']:>5.2f} /{b['p99_ms']:>5.2f}{a['p50_ms']:>5.2f} /{a['p99_ms']:>5.2f}")
cb = min(x["cpu_us_per_answer"] for x in rows if x["label"] == "before" and x["figure"] == "polls")
ca = min(x["cpu_us_per_answer"] for x in rows if x["label"] == "after" and x["figure"] == "polls")
print(f"{'polls: server CPU µs per answer, incl. warm-up (best round)':<58}{cb:>12.0f}{ca:>12.0f}")
rb = max(x["rss_kb"] for x in rows if x["label"] == "before" and x["figure"] == "polls")
ra = max(x["rss_kb"] for x in rows if x["label"] == "after" and x["figure"] == "polls")
print(f"{'peak RSS (VmHWM) after 32 concurrent polls, MB (worst round)':<58}{rb/1024:>12.1f}{ra/1024:>12.1f}  <= 64")
b, a = get("before", "slow"), get("after", "slow")
def lat(x):
    return f"{x['p50_ms']:.1f}/{x['p99_ms']:.0f}/{x['max_ms']:.0f}"
print(f"{f'{sys.argv[2]} slow readers: other tenant poll p50/p99/max ms':<58}{lat(b):>12}{lat(a):>12}  max <= 3000")
print(f"{'  polls answered 200 / timed out (no answer in time)':<58}{str(b['ok'])+' / '+str(b['timeouts']):>12}{str(a['ok'])+' / '+str(a['timeouts']):>12}")
print(f"{'  slow readers being served (bytes received)':<58}{b['slow_readers_served']:>12}{a['slow_readers_served']:>12}")
print(f"{'  server peak RSS, MB':<58}{b['rss_kb']/1024:>12.1f}{a['rss_kb']/1024:>12.1f}")
b, a = get("before", "gzip"), get("after", "gzip")
print(f"{'2 gzip ~107 MB answers: other token poll p50 / max ms':<58}{b['p50_ms']:>5.2f} /{b['max_ms']:>5.0f}{a['p50_ms']:>5.2f} /{a['max_ms']:>5.0f}  p50 <= 10, max <= 100")
print(f"{'  polls answered (errors)':<58}{str(b['answers'])+' ('+str(b['errors'])+')':>12}{str(a['answers'])+' ('+str(a['errors'])+')':>12}")
PY
for label in before after; do
    [ -f "$OUT_DIR/slow.gzip.$label.txt" ] || continue
    awk -v l="$label" '{n++; b+=$2; t+=$3} END {if (n) printf "  gzip fetches (%s): %d, mean %.1f MB on the wire, %.2f s each\n", l, n, b/n/1e6, t/n}' "$OUT_DIR/slow.gzip.$label.txt"
    rm -f "$OUT_DIR/slow.gzip.$label.txt"
done
machine_line
