#!/usr/bin/env bash
# The test suite in two parts: most tests spread over PARLEY_TEST_WORKERS processes (2 by
# default; pytest-xdist, one file per process at a time), then the tests marked `serial`, which
# measure timing or push the platform to its limits and need the machine to themselves.
# Arguments go to both parts (a file, -k, -x…). Exit status: non-zero if either part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
workers="${PARLEY_TEST_WORKERS:-2}"
status=0
run() {
    "$py" -m pytest "$@"
    local rc=$?
    # 5: no test selected in this part (a file or -k that picks only the other part's tests).
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then status=$rc; fi
}
echo "parley: tests in $workers processes, then the serial ones"
# The slowest tests are named at the end of each part: where the time goes, run after run.
run -n "$workers" --dist loadfile -m "not serial" --durations=25 "$@"
run -m serial --durations=10 "$@"
exit "$status"
