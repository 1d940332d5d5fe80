#!/usr/bin/env bash
# make demo: shows what Handoff can do today on one machine, through the same
# daemon API the tray uses: an xterm in its own container with a private
# display, text typed into it, suspended to disk, resumed exactly where it was.
# Writes screenshots, a timing report and the logs to demo-out/. Cleans up on
# success, failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "make demo needs root (containers and CRIU)"; exit 1; }

OUT=${DEMO_OUT:-demo-out}
rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d /var/tmp/handoff-demo.XXXXXX)
export HANDOFF_SOCKET=$WORK/handoff.sock
H=bin/handoff
daemon_pid=

cleanup() {
	set +e
	[ -S "$HANDOFF_SOCKET" ] && $H stop notes >/dev/null 2>&1
	if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
ms() { date +%s%3N; }

# type_into APP TEXT: types through XTEST inside the app's own display.
type_into() {
	local pid
	pid=$($H ls --json | python3 -c "import json,sys; print([a['pid'] for a in json.load(sys.stdin) if a['name']=='$1'][0])")
	nsenter -t "$pid" -m -n -p env DISPLAY=:1 xdotool mousemove 30 30 type --delay 15 "$2"
	nsenter -t "$pid" -m -n -p env DISPLAY=:1 xdotool key Return
}

step "starting the daemon (state in $WORK)"
$H daemon --state-dir "$WORK/state" >"$OUT/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 50); do [ -S "$HANDOFF_SOCKET" ] && break; sleep 0.1; done
$H status

step "running xterm as 'notes' in its own container"
t0=$(ms); $H run --name notes -- xterm -geometry 100x30; t_run=$(( $(ms) - t0 ))
sleep 1
type_into notes "echo 'typed before suspend: nothing here is saved to disk'"
sleep 0.5
$H screenshot notes "$OUT/1-running.png"
$H ls
$H handles notes >"$OUT/handles.txt"
echo "handles manifest: $(head -1 "$OUT/handles.txt") … (full table in $OUT/handles.txt)"

step "suspending: the app's processes end, its state goes to disk"
t0=$(ms); $H suspend notes; t_suspend=$(( $(ms) - t0 ))
$H ls | tee "$OUT/ls-suspended.txt"

step "resuming"
t0=$(ms); $H resume notes; t_resume=$(( $(ms) - t0 ))
sleep 0.3
$H screenshot notes "$OUT/2-resumed.png"
diff_pixels=$(compare -metric AE "$OUT/1-running.png" "$OUT/2-resumed.png" null: 2>&1 || true)
echo "pixels different from before the suspend: $diff_pixels"

step "typing still works after the resume"
type_into notes "echo 'typed after resume'"
sleep 0.5
$H screenshot notes "$OUT/3-after-resume.png"

image=$(grep -o '[0-9.]*[KMG] on disk' "$OUT/ls-suspended.txt" | head -1 || true)
cat >"$OUT/report.txt" <<REPORT
Handoff demo — $(date -u +%FT%TZ), $(uname -r), $($H status | sed -n 2p | sed 's/^CRIU: *//')
run xterm (container + Xvfb up):  ${t_run} ms
suspend (CRIU dump to disk):      ${t_suspend} ms, image ${image:-?}
resume (CRIU restore):            ${t_resume} ms
screen after resume vs before:    ${diff_pixels} pixels differ
REPORT
step "report"
cat "$OUT/report.txt"
$H stop notes
echo "screenshots, report and logs are in $OUT/"
