#!/usr/bin/env bash
# make test's two pytest passes, side by side: `make test-sqlite` and, when PostgreSQL is there,
# `make test-pg` (the tests that open a database, tests/conftest.py). Much of a pass is waiting on
# servers, browsers and subprocesses, so on two cores the pair takes little more than the longer
# one. Each pass writes its own log, printed whole when the pass ends; a line every minute says how
# far the running ones are. Exits non-zero if a pass failed.
#   tests/passes.sh MAKE PASS...      (PASS: sqlite | pg)
set -uo pipefail
make_cmd=$1; shift
logs=$(mktemp -d "${TMPDIR:-/tmp}/cityloop-passes.XXXXXX")
declare -A pid_of started
stop() {     # interrupted: stop the passes (and their pytest) and leave nothing behind
    trap - INT TERM
    for pid in "${pid_of[@]}"; do pkill -TERM -P "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null; done
    wait
    rm -rf "$logs"
    exit 130
}
trap stop INT TERM
for pass in "$@"; do
    "$make_cmd" --no-print-directory "test-$pass" > "$logs/$pass.log" 2>&1 &
    pid_of[$pass]=$!
    started[$pass]=$SECONDS
done
echo "== pytest passes side by side: $* (logs in $logs; each is printed when its pass ends)"

progress() {     # the last "[ NN%]" pytest printed in a pass's log
    grep -o '\[ *[0-9]*%\]' "$logs/$1.log" 2>/dev/null | tail -n 1 | tr -d '[] '
}

status=0
running=("$@")
while [ ${#running[@]} -gt 0 ]; do
    still=()
    for pass in "${running[@]}"; do
        if kill -0 "${pid_of[$pass]}" 2>/dev/null; then
            still+=("$pass")
            continue
        fi
        wait "${pid_of[$pass]}"
        rc=$?
        echo "== pass $pass ended (exit $rc, $((SECONDS - started[$pass])) s):"
        cat "$logs/$pass.log"
        [ "$rc" -eq 0 ] || status=1
    done
    running=("${still[@]+"${still[@]}"}")
    if [ ${#running[@]} -gt 0 ]; then
        for _ in $(seq 1 60); do     # a minute, or less if a pass ends
            sleep 1
            for pass in "${running[@]}"; do
                kill -0 "${pid_of[$pass]}" 2>/dev/null || break 2
            done
        done
        line=""
        for pass in "${running[@]}"; do
            kill -0 "${pid_of[$pass]}" 2>/dev/null && line+=" $pass $(progress "$pass" || true)"
        done
        [ -n "$line" ] && echo "   still running:$line"
    fi
done
trap - INT TERM
rm -rf "$logs"
exit $status
