#!/usr/bin/env bash
# Seed: `voxtrail seed --count 1000000` into a fresh database (one operation, 7 days), timed
# end to end (process start to exit, durable commits included). Target (bench/README.md): >= 100,000
# rows/s. No baseline: the figure is absolute.
#
# Environment: VOXTRAIL_BIN (else built), COUNT (default 1000000), REPS (default 2; best run).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-1000000}
REPS=${REPS:-2}
VOXTRAIL=$(voxtrail_bin)
DB="$OUT_DIR/seed.db"
RES="$OUT_DIR/seed.results.txt"
: >"$RES"

for _ in $(seq 1 "$REPS"); do
    rm -f "$DB" "$DB-wal" "$DB-shm"
    "$VOXTRAIL" --database "sqlite://$DB" operation create seeded >/dev/null
    sync
    t0=$EPOCHREALTIME
    run_fg "$VOXTRAIL" --database "sqlite://$DB" seed --operation seeded --count "$COUNT" --days 7 \
        --until 20261008000000 --seed 1 2>"$OUT_DIR/seed.log"
    t1=$EPOCHREALTIME
    stats=$(sqlite3 "$DB" 'SELECT count(*), avg(json_len) FROM interactions')
    size=$(du -b "$DB" | cut -f1)
    echo "$t0 $t1 $stats $size" >>"$RES"
done
rm -f "$DB" "$DB-wal" "$DB-shm"

python3 - "$RES" "$COUNT" <<'PY'
import sys
count = int(sys.argv[2])
runs = []
for line in open(sys.argv[1]):
    t0, t1, stats, size = line.split()
    n, avg = stats.split("|")
    assert int(n) == count, f"stored {n} rows, expected {count}"
    runs.append((float(t1) - float(t0), float(avg), int(size)))
best = min(runs)
print(f"seed: {count} rows into a fresh database, best of {len(runs)} runs")
print(f"voxtrail seed: {best[0]:.2f} s, {count/best[0]:,.0f} rows/s   target >= 100,000 rows/s")
print(f"rows average {best[1]:,.0f} bytes of JSON; database file {best[2]/1e9:.2f} GB "
      f"({count*best[1]/best[0]/1e6:,.0f} MB/s of JSON)")
print("all runs (seconds): " + " ".join(f"{r[0]:.2f}" for r in runs))
PY
machine_line
