#!/usr/bin/env bash
# make demo: two workstations on one machine (network namespaces on a
# bridge), a Handoff daemon in each, an xterm on ws-a with a line typed into
# it; suspend and resume on ws-a; the peers trust each other; the app is
# handed to ws-b with its unsaved text, typed into there, and brought back.
# Everything goes through the daemons' API (the CLI), as the tray does.
# Writes screenshots, a timing report and the logs to demo-out/, and tears
# everything down on success, failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "make demo needs root (containers, CRIU, network namespaces)"; exit 1; }

OUT=${DEMO_OUT:-demo-out}
rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d /var/tmp/handoff-demo.XXXXXX)
P=hodemo$$ # prefix of every namespace and link this demo creates
H=$PWD/bin/handoff
declare -A PID SOCK

cleanup() {
	set +e
	for ws in a b; do
		[ -S "${SOCK[$ws]:-/nonexistent}" ] && $H --socket "${SOCK[$ws]}" stop notes >/dev/null 2>&1
	done
	for ws in a b; do
		if [ -n "${PID[$ws]:-}" ]; then kill "${PID[$ws]}" 2>/dev/null; wait "${PID[$ws]}" 2>/dev/null; fi
	done
	for ns in "$P-a" "$P-b" "$P-br"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
ms() { date +%s%3N; }
on() { local ws=$1; shift; $H --socket "${SOCK[$ws]}" "$@"; }
# inside WS CMD...: the CLI on the workstation's own network, as its tray runs.
inside() { local ws=$1; shift; nsenter --net="/run/netns/$P-$ws" -- $H --socket "${SOCK[$ws]}" "$@"; }

# type_into WS TEXT: types through XTEST inside the app's own display.
type_into() {
	local pid ink
	# Wait for the shell's prompt: keys typed before it are echoed twice.
	for _ in $(seq 300); do
		on "$1" screenshot notes "$WORK/prompt.png"
		ink=$(convert "$WORK/prompt.png" -crop 296x13+4+3 -colorspace gray -threshold 50% -negate -format '%[fx:round(mean*w*h)]' info:)
		# a prompt, not a lone cursor nor the black root before xterm maps
		[ "$ink" -gt 150 ] && [ "$ink" -lt 1800 ] && break
		sleep 0.1
	done
	pid=$(on "$1" ls --json | python3 -c "import json,sys; print([a['pid'] for a in json.load(sys.stdin) if a['name']=='notes'][0])")
	nsenter -t "$pid" -m -n -p env DISPLAY=:1 xdotool mousemove 30 30 type --delay 15 "$2"
	nsenter -t "$pid" -m -n -p env DISPLAY=:1 xdotool key Return
	sleep 0.7
}

step "two workstations: network namespaces $P-a and $P-b on a bridge (192.0.2.0/24)"
ip netns add "$P-br"
ip -n "$P-br" link add br0 type bridge
ip -n "$P-br" link set br0 up
i=10
for ws in a b; do
	ip netns add "$P-$ws"
	ip link add "$P-$ws-p" type veth peer name "$P-$ws-e"
	ip link set "$P-$ws-p" netns "$P-br"
	ip link set "$P-$ws-e" netns "$P-$ws"
	ip -n "$P-br" link set "$P-$ws-p" master br0 up
	ip -n "$P-$ws" link set "$P-$ws-e" name eth0
	ip -n "$P-$ws" addr add "192.0.2.$i/24" dev eth0
	ip -n "$P-$ws" link set eth0 up multicast on
	ip -n "$P-$ws" link set lo up
	i=$((i + 1))
done

step "starting a daemon on each (state in $WORK)"
for ws in a b; do
	SOCK[$ws]=$WORK/$ws.sock
	nsenter --net="/run/netns/$P-$ws" -- "$H" --socket "${SOCK[$ws]}" daemon \
		--state-dir "$WORK/$ws" --name "ws-$ws" >"$OUT/daemon-ws-$ws.log" 2>&1 &
	PID[$ws]=$!
done
for ws in a b; do
	for _ in $(seq 100); do on "$ws" status >/dev/null 2>&1 && break; sleep 0.1; done
done
on a status
for _ in $(seq 100); do on a peers | grep -q 'ws-b .* yes' && break; sleep 0.1; done
on a peers | tee "$OUT/peers-seen-by-ws-a.txt"

step "ws-a runs xterm as 'notes' in its own container; a line is typed into it"
on a run --name notes -- xterm -geometry 100x30
sleep 1
type_into a "echo 'typed on ws-a; this text exists only in the running app'"
on a screenshot notes "$OUT/1-ws-a-running.png"
on a handles notes >"$OUT/handles.txt"

step "suspend and resume on ws-a"
t0=$(ms); on a suspend notes; t_suspend=$(( $(ms) - t0 ))
t0=$(ms); on a resume notes; t_resume=$(( $(ms) - t0 ))
sleep 0.5
on a screenshot notes "$OUT/2-ws-a-resumed.png"

step "the peers trust each other (device IDs, as after pairing)"
id_a=$(on a id | head -1); id_b=$(on b id | head -1)
on a trust "$id_b" --auto-accept
on b trust "$id_a" --auto-accept

step "handing 'notes' from ws-a to ws-b"
t0=$(ms); on a send notes ws-b | tee "$OUT/send.txt"; t_send=$(( $(ms) - t0 ))
sleep 0.5
on b screenshot notes "$OUT/3-ws-b-received.png"
echo "ws-a:"; on a ls; echo "ws-b:"; on b ls
step "ws-a's viewer shows 'notes' from ws-b's WebRTC stream; typing in it goes to ws-b"
inside a view notes --snapshot "$OUT/4-ws-a-viewer-streaming-from-ws-b.png" \
	--type "echo 'typed in the viewer on ws-a, running on ws-b'"$'\n' | tee "$OUT/view.txt"
sleep 0.5
on b screenshot notes "$OUT/4-ws-b-typing.png"
psnr_view=$(compare -metric PSNR "$OUT/4-ws-b-typing.png" "$OUT/4-ws-a-viewer-streaming-from-ws-b.png" null: 2>&1 || true)

step "bringing it back to ws-a"
t0=$(ms); on a bring-back notes; t_back=$(( $(ms) - t0 ))
sleep 0.5
on a screenshot notes "$OUT/5-ws-a-back.png"
diff_resume=$(compare -metric AE "$OUT/1-ws-a-running.png" "$OUT/2-ws-a-resumed.png" null: 2>&1 || true)
diff_send=$(compare -metric AE "$OUT/2-ws-a-resumed.png" "$OUT/3-ws-b-received.png" null: 2>&1 || true)

cat >"$OUT/report.txt" <<REPORT
Handoff demo — $(date -u +%FT%TZ), $(uname -r), CRIU $(criu --version | head -1 | awk '{print $2}')
suspend on ws-a:                 ${t_suspend} ms
resume on ws-a:                  ${t_resume} ms   (screen vs before: ${diff_resume} pixels differ)
send ws-a → ws-b (whole call):   ${t_send} ms    $(sed 's/^.*: //' "$OUT/send.txt")
  screen on ws-b vs ws-a:        ${diff_send} pixels differ
ws-a's viewer of ws-b (WebRTC):  PSNR ${psnr_view} dB against ws-b's screen
bring back ws-b → ws-a:          ${t_back} ms
REPORT
step "report"
cat "$OUT/report.txt"
echo "screenshots, report and logs are in $OUT/"
