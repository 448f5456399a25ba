#!/usr/bin/env bash
# Profiles one hookmesh process during a `hookmesh bench` run with `perf record` and prints
# docs/perf/perf_summary.py's summary.
#
#   docs/perf/profile.sh [process] [bench flags…]
#   docs/perf/profile.sh standalone --scenario baseline
#   docs/perf/profile.sh dispatcher --scenario fanout --backend kafka-redis --events 2000
#
# `process` is the role whose process is sampled (standalone, ingest, router, renderer,
# dispatcher); with several runs in one scenario the first run's process is sampled.
# cpu-clock (a software event) is used because VMs often have no hardware counters
# (`perf stat -e instructions true` says `<not supported>` on the machine of the README
# results); stacks are unwound with DWARF (the release profile keeps line tables; no frame
# pointers). Output goes to ${OUT:-/tmp/hookmesh-profile}.
set -euo pipefail
cd "$(dirname "$0")/../.."
role="${1:-standalone}"
shift || true
out="${OUT:-/tmp/hookmesh-profile}"
mkdir -p "$out"
target/release/hookmesh bench "$@" >"$out/bench.out" 2>&1 &
bench=$!
pid=""
while [ -z "$pid" ]; do
    kill -0 "$bench" 2>/dev/null || { cat "$out/bench.out"; exit 1; }
    pid=$(pgrep -P "$bench" -f "hookmesh $role" | head -1 || true)
    sleep 0.01
done
# Threads started after perf attaches are not sampled: wait until the process has started its
# backends (the bench publishes only once it is ready).
sleep "${ATTACH_DELAY:-2}"
perf record -e cpu-clock -F "${FREQ:-999}" --call-graph dwarf,16384 -p "$pid" -o "$out/perf.data" \
    >"$out/perf.out" 2>&1 &
wait "$bench"
sleep 1
grep -A30 '^scenario' "$out/bench.out" || true
perf script -i "$out/perf.data" -F comm,tid,time,ip,sym 2>/dev/null >"$out/script.txt"
python3 docs/perf/perf_summary.py "$out/script.txt" 15 | tee "$out/summary.txt"
