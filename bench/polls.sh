#!/usr/bin/env bash
# Polls: many small answers (5-minute windows, random operations and times) from 1,000,000
# seeded rows across 10 operations, 32 concurrent keep-alive connections and 1 connection,
# against voxtrail and against a plain Python server (bench/baseline_server.py) over the SAME
# SQLite file, in the same run. Targets (bench/README.md): >= 5,000 answers/s, p99 <= 20 ms with 32
# connections; single-client median <= 2 ms.
#
# Environment: VOXTRAIL_BIN, LOADGEN_BIN (else built), DURATION (s, default 10), WARMUP (s, 2),
# ROUNDS (default 3: voxtrail and baseline alternate; the best round of each is compared),
# CONNS (32), LOADGEN_THREADS (1).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}

VOXTRAIL=$(voxtrail_bin)
LOADGEN=$(loadgen_bin)
ensure_polls_db
DB=$POLLS_DB

RES="$OUT_DIR/polls.results.jsonl"
: >"$RES"

start_voxtrail() {
    PORT=$(free_port)
    start_bg "$OUT_DIR/polls.voxtrail.log" "$VOXTRAIL" --database "sqlite://$DB" serve --listen "127.0.0.1:$PORT"
    wait_port "$PORT" "$BG_PID"
}

start_baseline() {
    PORT=$(free_port)
    start_bg "$OUT_DIR/polls.baseline.log" python3 "$BENCH_DIR/baseline_server.py" "$DB" "$PORT"
    wait_port "$PORT" "$BG_PID"
}

# load SERVER CONNS ROUND
load() {
    run_fg "$LOADGEN" --addr "127.0.0.1:$PORT" --tokens "$POLLS_TOKENS" --connections "$2" \
        --duration "$DURATION" --warmup "$WARMUP" --from "$POLLS_FROM" --to "$POLLS_UNTIL" --window-secs 300 \
        --threads "$LOADGEN_THREADS" --seed "$3" --label "$1" >>"$RES"
}

for round in $(seq 1 "$ROUNDS"); do
    for server in voxtrail baseline; do
        "start_$server"
        load "$server" "$CONNS" "$round"
        load "$server" 1 "$round"
        stop_bg "$BG_PID"
    done
done

python3 - "$RES" "$CONNS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
conns = int(sys.argv[2])
def best(label, c):
    runs = [r for r in rows if r["label"] == label and r["connections"] == c]
    return max(runs, key=lambda r: r["answers_per_s"]), len(runs)
print(f"polls: 1,000,000 rows / 10 operations, random 5-minute windows; best of the rounds")
print(f"{'figure':<28}{'voxtrail':>12}{'python baseline':>17}{'ratio':>9}  target")
for c in (conns, 1):
    v, n = best("voxtrail", c)
    b, _ = best("baseline", c)
    for key, unit, target in (("answers_per_s", "answers/s", ">= 5000" if c == conns else ""),
                              ("p50_ms", "p50 ms", "<= 2" if c == 1 else ""),
                              ("p99_ms", "p99 ms", "<= 20" if c == conns else ""),
                              ("mb_per_s", "MB/s", "")):
        ratio = v[key] / b[key] if b[key] else float("nan")
        if key.endswith("_ms"):
            ratio = b[key] / v[key] if v[key] else float("nan")  # > 1 means voxtrail is faster
        print(f"{f'{c} conn {unit}':<28}{v[key]:>12.2f}{b[key]:>17.2f}{ratio:>8.2f}x  {target}")
    print(f"{f'{c} conn errors':<28}{v['errors']:>12}{b['errors']:>17}")
    print(f"{f'{c} conn mean answer bytes':<28}{v['mean_bytes']:>12}{b['mean_bytes']:>17}")
print("(ratio: voxtrail/baseline for rates, baseline/voxtrail for latencies; > 1 = voxtrail better)")
print("all runs:")
for r in rows:
    print(f"  {r['label']:<9} conns={r['connections']:<3} answers/s={r['answers_per_s']:9.1f} "
          f"p50={r['p50_ms']:.2f}ms p99={r['p99_ms']:.2f}ms mean={r['mean_ms']:.2f}ms max={r['max_ms']:.1f}ms "
          f">10ms={r['over_10ms']} errors={r['errors']} {r['error_kinds'] or ''}")
PY
machine_line
