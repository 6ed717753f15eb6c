#!/usr/bin/env bash
# Hostile peers: N slowloris, N idle, N half-sent 400 KB heads, each against a fresh server.
# Prints, per kind: server RSS before, with them open, after the server's timeouts, and after
# the clients close them; the server's open connections; p50/p99 of another client's polls
# while they are open. With VOXTRAIL_BIN_BEFORE=PATH the same runs against that binary (the
# build before the connection hardening) as a baseline. Loopback only; bounded; stops itself.
#
#   bench/slow_peers.sh                       # N=1000 per kind, ~2 min per binary
#   N=200 WAIT=12 bench/slow_peers.sh         # smaller, shorter
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-1000}
# Seconds to wait for the server's timeouts (the runs set the header timeout to 5 s).
WAIT=${WAIT:-10}
BIN=$(voxtrail_bin)
PY="$BENCH_DIR/slow_peers.py"
PATH_Q='/api/v2/reports_manager.php?api=chat_12&date_ini=20260301000000&date_end=20260301235959'

run_binary() { # LABEL BIN
    local label=$1 bin=$2 kind dir db port token
    for kind in slowloris idle bighead; do
        dir=$(mktemp -d "$OUT_DIR/slow_peers.XXXXXX")
        db="sqlite://$dir/v.db"
        VOXTRAIL_DATABASE_URL=$db "$bin" operation create acme --timezone America/Bogota >/dev/null
        printf '%s\n' '{"conn_id":"bench-row","agent_id":"7","agent_name":"Ana","from":"a@b.co","to":"c@d.co","subject":"s","body":"b","date":"2026-03-01 10:00:00","cod_act":"1","description_cod_act":"x"}' \
            | VOXTRAIL_DATABASE_URL=$db "$bin" import --operation acme - >/dev/null 2>&1
        token=$(VOXTRAIL_DATABASE_URL=$db "$bin" token create --operation acme --scope report 2>/dev/null)
        port=$(free_port)
        # Unknown settings are ignored by older binaries, so the same environment serves both.
        start_bg "$dir/server.log" env VOXTRAIL_DATABASE_URL="$db" \
            VOXTRAIL_HTTP__HEADER_READ_TIMEOUT_MS=5000 VOXTRAIL_HTTP__IDLE_TIMEOUT_MS=5000 \
            "$bin" serve --listen "127.0.0.1:$port"
        local pid=$BG_PID
        wait_port "$port" "$pid"
        local line
        line=$(run_fg timeout 300 python3 "$PY" --port "$port" --pid "$pid" --token "$token" \
            --path "$PATH_Q" --kind "$kind" --count "$N" --wait "$WAIT")
        printf '%s\t%s\n' "$label" "$line"
        # A baseline may never finish its drain: no SIGTERM here, the run is over.
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        forget_pid "$pid"
        rm -rf "$dir"
    done
}

machine_line >&2 || true
{
    run_binary after "$BIN"
    if [ -n "${VOXTRAIL_BIN_BEFORE:-}" ]; then
        run_binary before "$VOXTRAIL_BIN_BEFORE"
    fi
} | python3 -c '
import json, sys
cols = ["rss_start_kb", "rss_open_kb", "rss_after_wait_kb", "rss_after_close_kb",
        "server_conns_open", "server_conns_after_wait", "closed_by_server",
        "poll_p50_ms", "poll_p99_ms", "polls_ok", "polls_failed"]
print("binary\tkind\tN\t" + "\t".join(cols))
for line in sys.stdin:
    label, js = line.rstrip("\n").split("\t", 1)
    r = json.loads(js)
    print("\t".join([label, r["kind"], str(r["count"])] + [str(r.get(c)) for c in cols]))
' | column -t
