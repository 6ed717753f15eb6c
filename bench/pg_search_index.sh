#!/usr/bin/env bash
# PostgreSQL: what a word-search index maintained at ingestion (a GIN expression index
# `interactions_search` on `voxtrail_search(json)`, which the schema does not create because of
# this cost) would cost ingestion. Two fresh databases migrated alike, the first with the index
# created; `voxtrail seed` of the same rows into each, alternating, in the same run; the best run
# of each is compared.
#
# Environment: VOXTRAIL_BIN (else built), COUNT (default 100000), REPS (default 2),
# PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres). Requires psql.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-100000}
REPS=${REPS:-2}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
VOXTRAIL=$(voxtrail_bin)
BASE=${PG_ADMIN_URL%/*}

# seed_once DB: a fresh database (the index created when DB ends in _gin); prints rows/s.
seed_once() {
    local db=$1 url="$BASE/$1" t0 t1
    psql -q -d "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    "$VOXTRAIL" --database "$url" operation create bench >/dev/null
    if [[ $db == *_gin ]]; then
        psql -q -d "$url" -c "CREATE INDEX interactions_search ON interactions USING GIN (voxtrail_search(json))"
    fi
    t0=$EPOCHREALTIME
    run_fg "$VOXTRAIL" --database "$url" seed --operation bench --count "$COUNT" --days 31 \
        --until 20261031235959 --seed 1 2>/dev/null
    t1=$EPOCHREALTIME
    psql -q -d "$PG_ADMIN_URL" -c "DROP DATABASE $db WITH (FORCE)"
    python3 -c "import sys; print(f'{int(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2])):.0f}')" \
        "$COUNT" "$t0" "$t1"
}

WITH=() WITHOUT=()
for _ in $(seq 1 "$REPS"); do
    WITH+=("$(seed_once voxtrail_bench_gin)")
    WITHOUT+=("$(seed_once voxtrail_bench_noidx)")
done
python3 - "$COUNT" "${WITH[*]}" "${WITHOUT[*]}" <<'PY'
import sys
n, w, wo = int(sys.argv[1]), [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"PostgreSQL seed, {n} rows, best of {len(w)} each:")
print(f"  with the GIN word-search index:    {max(w):,.0f} rows/s  (runs: {', '.join(f'{x:,.0f}' for x in w)})")
print(f"  without it:                        {max(wo):,.0f} rows/s  (runs: {', '.join(f'{x:,.0f}' for x in wo)})")
print(f"  cost of the index: {100 * (1 - max(w) / max(wo)):.0f} % of seed throughput")
PY
machine_line
