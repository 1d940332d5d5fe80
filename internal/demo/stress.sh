#!/usr/bin/env bash
# make demo-stress: `make demo` RUNS times in a row (default 10) while a
# load generator (stress-ng, one CPU hog per core) keeps every core busy, as
# on a machine that is also doing other work. Prints pass/fail per run and
# the handoff's downtime from each run's report.txt; each run's output is in
# demo-stress-out/run-N/. The load generator is stopped by its PID at the
# end, on failure and on Ctrl-C. Exits non-zero when a run failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "make demo-stress needs root, as make demo does"; exit 1; }
RUNS=${RUNS:-10}
CPUS=${STRESS_CPUS:-$(nproc)}
OUT=${STRESS_OUT:-demo-stress-out}
command -v stress-ng >/dev/null || { echo "stress-ng is missing; run make deps"; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"

LOAD_PID=
stop_load() {
	[ -n "$LOAD_PID" ] || return 0
	# stress-ng runs in a session of its own: its workers go with it.
	kill -TERM -- "-$LOAD_PID" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$LOAD_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL -- "-$LOAD_PID" 2>/dev/null || true
	wait "$LOAD_PID" 2>/dev/null || true
	LOAD_PID=
}
trap stop_load EXIT
trap 'exit 130' INT TERM

setsid stress-ng --cpu "$CPUS" --cpu-method matrixprod --timeout 0 --quiet >"$OUT/stress-ng.log" 2>&1 &
LOAD_PID=$!
sleep 1
kill -0 "$LOAD_PID" 2>/dev/null || { echo "stress-ng did not start; see $OUT/stress-ng.log"; exit 1; }
echo "load: stress-ng --cpu $CPUS (pid $LOAD_PID); $RUNS runs of make demo"

passed=0
summary=()
for i in $(seq "$RUNS"); do
	dir=$OUT/run-$i
	t0=$(date +%s)
	load=$(cut -d' ' -f1 /proc/loadavg)
	if DEMO_OUT=$dir make --no-print-directory demo >"$OUT/run-$i.log" 2>&1; then
		result=pass
		passed=$((passed + 1))
	else
		result=FAIL
	fi
	took=$(( $(date +%s) - t0 ))
	# "send ws-a → ws-b (whole call): 2400 ms    down for 312ms, 19.7 MB sent"
	down=$(grep -o 'down for [^,]*' "$dir/report.txt" 2>/dev/null | head -1 | sed 's/down for //' || true)
	line=$(printf 'run %2d: %s  downtime %-8s  took %3d s  (load %s at start)' "$i" "$result" "${down:--}" "$took" "$load")
	[ "$result" = FAIL ] && line="$line  $(grep -m1 'make demo:' "$OUT/run-$i.log" || tail -1 "$OUT/run-$i.log")"
	echo "$line"
	summary+=("$line")
done
stop_load
{
	echo "make demo-stress: $passed of $RUNS runs passed under stress-ng --cpu $CPUS ($(nproc) cores), $(date -u +%FT%TZ)"
	printf '%s\n' "${summary[@]}"
} | tee "$OUT/summary.txt"
[ "$passed" = "$RUNS" ]
