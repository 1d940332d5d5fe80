#!/usr/bin/env bash
# make demo: two workstations on one machine (network namespaces on a
# bridge), a Handoff daemon in each, and ws-a's tray (`handoff tray`, the
# desktop user's side) on a private Xvfb with a window manager, or on
# $DISPLAY when one is set. An xterm runs on ws-a with a line typed into it;
# it is suspended and resumed; the peers trust each other; the tray's viewer
# window shows the app; the app is handed to ws-b with its unsaved text
# (through the daemons' API, as the tray does: `handoff send`), and the same
# viewer window then shows it streamed from ws-b and types into it there;
# then it is brought back.
# Writes screenshots, a timing report and the logs to demo-out/, and tears
# everything down on success, failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "make demo needs root (containers, CRIU, network namespaces)"; exit 1; }

OUT=${DEMO_OUT:-demo-out}
rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d /var/tmp/handoff-demo.XXXXXX)
# Apps' containers reach their files through the daemons' state dirs here.
chmod 0711 "$WORK"
P=hodemo$$ # prefix of every namespace and link this demo creates
# The app runs as a person, not as root: a user of the demo's own, with a
# home in $WORK, removed at the end.
DEMO_USER=hodemo$$ DEMO_USER_MADE=
H=$PWD/bin/handoff
APP_W=640 APP_H=420 # the app's display; xterm 100x30 covers most of it
declare -A PID SOCK
XVFB_PID= WM_PID= TRAY_PID= SEND_PID=
# What runs in the background gets a session of its own (setsid): Ctrl-C
# reaches only this script, whose cleanup then stops the app through the
# daemons before it stops them.
T_START=$(date +%s%3N)

# stop_pid PID: SIGTERM, then SIGKILL after 10 s; reaps it.
stop_pid() {
	local pid=$1
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

cleanup() {
	local rc=$?
	set +e
	[ -n "$SEND_PID" ] && stop_pid "$SEND_PID"
	[ -n "$TRAY_PID" ] && stop_pid "$TRAY_PID"
	for ws in a b; do
		[ -S "${SOCK[$ws]:-/nonexistent}" ] && $H --socket "${SOCK[$ws]}" stop notes >/dev/null 2>&1
	done
	for ws in a b; do
		[ -n "${PID[$ws]:-}" ] && stop_pid "${PID[$ws]}"
	done
	# A daemon that died leaves its app running: a daemon started on the
	# same state dir adopts it, and stops it.
	for ws in a b; do
		[ -d "$WORK/$ws/apps/notes" ] || continue
		echo "stopping the app that ws-$ws's daemon left behind" >&2
		setsid "$H" --socket "$WORK/rescue.sock" daemon --state-dir "$WORK/$ws" --no-mdns \
			--listen 127.0.0.1:0 --web "" >>"$OUT/daemon-rescue.log" 2>&1 &
		local rescue=$!
		for _ in $(seq 100); do $H --socket "$WORK/rescue.sock" status >/dev/null 2>&1 && break; sleep 0.1; done
		$H --socket "$WORK/rescue.sock" stop notes >&2
		stop_pid "$rescue"
	done
	[ -n "$WM_PID" ] && stop_pid "$WM_PID"
	[ -n "$XVFB_PID" ] && stop_pid "$XVFB_PID"
	for ns in "$P-a" "$P-b" "$P-br"; do ip netns del "$ns" 2>/dev/null; done
	[ -n "$DEMO_USER_MADE" ] && userdel "$DEMO_USER" 2>/dev/null
	rm -rf "$WORK"
	if [ "$rc" != 0 ]; then
		[ "$rc" = 130 ] && echo "make demo interrupted; everything it started is stopped. Logs: $OUT/" >&2
		[ "$rc" != 130 ] && echo "make demo failed (exit $rc); everything it started is stopped. Logs: $OUT/" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
fail() { echo "make demo: $*" >&2; exit 1; }
ms() { date +%s%3N; }
# Deadlines are generous: on a busy machine every step is slower, and the
# demo waits for what it needs instead of guessing a time (DEMO_WAIT_SCALE=2
# doubles them).
WAIT_SCALE=${DEMO_WAIT_SCALE:-1}
# wait_until SECONDS WHAT CMD...: runs CMD every 0.1 s until it succeeds;
# after SECONDS fails the demo saying WHAT did not happen.
wait_until() {
	local secs=$1 what=$2 end
	shift 2
	end=$(( $(ms) + secs * WAIT_SCALE * 1000 ))
	until "$@"; do
		[ "$(ms)" -lt "$end" ] || fail "$what (waited $((secs * WAIT_SCALE)) s)"
		sleep 0.1
	done
}
on() { local ws=$1; shift; $H --socket "${SOCK[$ws]}" "$@"; }
# inside WS CMD...: the CLI on the workstation's own network, as its tray runs.
inside() { local ws=$1; shift; nsenter --net="/run/netns/$P-$ws" -- $H --socket "${SOCK[$ws]}" "$@"; }
# x CMD...: a command on ws-a's desktop display.
x() { DISPLAY=$A_DISPLAY "$@"; }

# type_into WS TEXT: types through XTEST inside the app's own display.
type_into() {
	local pid
	wait_prompt "$1"
	pid=$(on "$1" ls --json | python3 -c "import json,sys; print([a['pid'] for a in json.load(sys.stdin) if a['name']=='notes'][0])")
	on "$1" screenshot notes "$WORK/before-typing.png"
	nsenter -t "$pid" -m -n -p env DISPLAY=:1 xdotool mousemove 30 30 type --delay 15 "$2"
	nsenter -t "$pid" -m -n -p env DISPLAY=:1 xdotool key Return
	wait_settled "$1" "$WORK/before-typing.png"
}

# wait_settled WS [BEFORE.png]: until the app's display on WS differs from
# BEFORE (when given) and stays the same over three looks 0.2 s apart:
# what was typed has been echoed and run.
wait_settled() {
	local same=0 end
	end=$(( $(ms) + 30 * WAIT_SCALE * 1000 ))
	rm -f "$WORK/settle-last.png"
	while [ "$(ms)" -lt "$end" ]; do
		if on "$1" screenshot notes "$WORK/settle.png" 2>/dev/null &&
			{ [ -z "${2:-}" ] || ! same_picture "$2" "$WORK/settle.png"; }; then
			if [ -f "$WORK/settle-last.png" ] && same_picture "$WORK/settle-last.png" "$WORK/settle.png"; then
				same=$((same + 1))
				[ "$same" -ge 2 ] && return 0
			else
				same=0
			fi
			mv "$WORK/settle.png" "$WORK/settle-last.png"
		fi
		sleep 0.2
	done
	fail "the display of the app on ws-$1 did not settle after typing (waited $((30 * WAIT_SCALE)) s)"
}
same_picture() { [ "$(compare -metric AE "$1" "$2" null: 2>&1 || true)" = 0 ]; }

# wait_prompt WS: until the shell in the xterm drew its prompt (keys typed
# before it are echoed twice).
wait_prompt() {
	local ink end
	end=$(( $(ms) + 60 * WAIT_SCALE * 1000 ))
	while [ "$(ms)" -lt "$end" ]; do
		# The app's display may not be up yet right after `handoff run`.
		if on "$1" screenshot notes "$WORK/prompt.png" 2>/dev/null; then
			ink=$(convert "$WORK/prompt.png" -crop 296x13+4+3 -colorspace gray -threshold 50% -negate -format '%[fx:round(mean*w*h)]' info:)
			# a prompt, not a lone cursor nor the black root before xterm maps
			[ "$ink" -gt 150 ] && [ "$ink" -lt 1800 ] && return 0
		fi
		sleep 0.1
	done
	fail "the xterm on ws-$1 never showed its shell prompt (waited $((60 * WAIT_SCALE)) s)"
}

# window TITLE-REGEX: the X window of the tray with that title, or nothing.
window() { { x xdotool search --all --pid "$TRAY_PID" --name "$1" 2>/dev/null || true; } | head -1; }
title() { x xdotool getwindowname "$VIEWER"; }
# move_window WIN X Y: moves it and waits until the window manager did (a
# click aimed at its old place would miss); at most 10 s, as xdotool's
# --sync waits for any move, and a window already there does not move.
move_window() { timeout 10 env DISPLAY="$A_DISPLAY" xdotool windowmove --sync "$@" || true; }

# shot_window WIN OUT.png: the window as it looks on the desktop, frame and
# title included.
shot_window() { x import -window "$1" -frame "$2"; }

# bright_crop IN OUT: the bright part of a picture (the xterm, white, without
# the black root around it and the viewer's margins).
bright_crop() {
	local g w h x y
	g=$(convert "$1" -colorspace gray -threshold 60% -bordercolor black -border 1 -format '%@' info:)
	w=${g%%x*} g=${g#*x}
	h=${g%%+*} g=${g#*+}
	x=${g%%+*} y=${g#*+}
	convert "$1" -crop "${w}x${h}+$((x - 1))+$((y - 1))" +repage "$2"
}

# viewer_psnr REF.png: how closely the picture in the viewer window matches
# REF (an app's display), in dB ("inf": identical). The picture sits under
# the toolbar, scaled to the space there; the xterm in both is compared,
# REF scaled to the viewer's size.
viewer_psnr() {
	local h
	x import -window "$VIEWER" "$WORK/viewer-client.png"
	h=$(identify -format '%h' "$WORK/viewer-client.png")
	# The picture and a margin above it (the window's padding), without
	# the toolbar; bright_crop then finds the xterm in it.
	convert "$WORK/viewer-client.png" -crop "+0+$((h - APP_H - 12))" +repage "$WORK/viewer-screen.png"
	bright_crop "$WORK/viewer-screen.png" "$WORK/viewer-xterm.png"
	bright_crop "$1" "$WORK/ref-xterm.png"
	convert "$WORK/ref-xterm.png" -resize "$(identify -format '%wx%h' "$WORK/viewer-xterm.png")!" "$WORK/ref-xterm.png"
	compare -metric PSNR "$WORK/ref-xterm.png" "$WORK/viewer-xterm.png" null: 2>&1 || true
}

# viewer_shows WS MIN-DB: waits until the viewer window shows WS's display
# (at least MIN-DB PSNR) and prints the PSNR.
viewer_shows() {
	local p= end
	end=$(( $(ms) + 60 * WAIT_SCALE * 1000 ))
	while [ "$(ms)" -lt "$end" ]; do
		if on "$1" screenshot notes "$WORK/ref.png" 2>/dev/null; then
			p=$(viewer_psnr "$WORK/ref.png")
			if [ "$p" = inf ] || python3 -c "import sys; sys.exit(0 if float('$p') >= $2 else 1)" 2>/dev/null; then
				echo "$p"
				return 0
			fi
		fi
		sleep 0.5
	done
	cp "$WORK/viewer-client.png" "$OUT/failed-viewer-window.png"
	cp "$WORK/ref.png" "$OUT/failed-app-display-ws-$1.png"
	fail "A's viewer window does not show the app's display from ws-$1 (PSNR $p dB < $2); see $OUT/tray-ws-a.log"
}

# wait_title REGEX: until the viewer's title matches.
wait_title() {
	local end
	end=$(( $(ms) + 60 * WAIT_SCALE * 1000 ))
	while [ "$(ms)" -lt "$end" ]; do
		title 2>/dev/null | grep -Eq "$1" && return 0
		sleep 0.1
	done
	fail "A's viewer window is titled '$(title)', expected it to match '$1'"
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
	setsid nsenter --net="/run/netns/$P-$ws" -- "$H" --socket "${SOCK[$ws]}" daemon \
		--state-dir "$WORK/$ws" --name "ws-$ws" >"$OUT/daemon-ws-$ws.log" 2>&1 &
	PID[$ws]=$!
done
daemon_up() { kill -0 "${PID[$1]}" 2>/dev/null || fail "the daemon of ws-$1 exited; see $OUT/daemon-ws-$1.log"; on "$1" status >/dev/null 2>&1; }
for ws in a b; do
	wait_until 30 "the daemon of ws-$ws did not start; see $OUT/daemon-ws-$ws.log" daemon_up "$ws"
done
on a status
sees_b() { on a peers 2>/dev/null | grep -q 'ws-b .* yes'; }
wait_until 30 "ws-a does not see ws-b on the network (mDNS); see $OUT/daemon-ws-a.log" sees_b
on a peers | tee "$OUT/peers-seen-by-ws-a.txt"

step "ws-a runs xterm as 'notes' in its own container; a line is typed into it"
mkdir -p -m 0755 "$WORK/home"
useradd --create-home --home-dir "$WORK/home/$DEMO_USER" --shell /bin/bash --comment "Handoff demo" "$DEMO_USER" ||
	fail "cannot make the demo's user $DEMO_USER"
DEMO_USER_MADE=1
on a run --as "$DEMO_USER" --name notes --size "${APP_W}x${APP_H}" -- xterm -geometry 100x30+0+0
type_into a "echo 'typed on ws-a; this text exists only in the running app'"
on a screenshot notes "$OUT/1-ws-a-app-display.png"
on a handles notes >"$OUT/handles.txt"

step "suspend and resume on ws-a"
t0=$(ms); on a suspend notes; t_suspend=$(( $(ms) - t0 ))
t0=$(ms); on a resume notes; t_resume=$(( $(ms) - t0 ))
wait_prompt a
on a screenshot notes "$OUT/2-ws-a-app-display-resumed.png"

step "the peers trust each other (device IDs, as after pairing)"
id_a=$(on a id | head -1); id_b=$(on b id | head -1)
on a trust "$id_b" --auto-accept
on b trust "$id_a" --auto-accept

if [ -n "${DISPLAY:-}" ]; then
	A_DISPLAY=$DISPLAY
	step "ws-a's desktop: your display $A_DISPLAY"
else
	step "ws-a's desktop: a private Xvfb with a window manager (openbox)"
	command -v openbox >/dev/null || fail "openbox is missing; run make deps"
	setsid Xvfb -displayfd 3 -screen 0 1600x1000x24 -nolisten tcp 3>"$WORK/xdisplay" >"$OUT/xvfb-ws-a.log" 2>&1 &
	XVFB_PID=$!
	wait_until 30 "Xvfb did not start; see $OUT/xvfb-ws-a.log" test -s "$WORK/xdisplay"
	A_DISPLAY=:$(head -1 "$WORK/xdisplay")
	XDG_CONFIG_HOME=$WORK/wm-config DISPLAY=$A_DISPLAY setsid openbox --sm-disable >"$OUT/openbox-ws-a.log" 2>&1 &
	WM_PID=$!
	wm_up() { x xprop -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | grep -q window; }
	wait_until 30 "the window manager (openbox) did not start; see $OUT/openbox-ws-a.log" wm_up
	echo "display $A_DISPLAY"
fi

step "ws-a's tray: handoff tray, a client of ws-a's daemon, on ws-a's network"
# Its own config dir: the demo leaves no preferences behind.
setsid nsenter --net="/run/netns/$P-a" -- env DISPLAY="$A_DISPLAY" XDG_CONFIG_HOME="$WORK/tray-config" \
	"$H" --socket "${SOCK[a]}" tray --devices --no-hotkey >"$OUT/tray-ws-a.log" 2>&1 &
TRAY_PID=$!
DEVICES=
devices_window() {
	kill -0 "$TRAY_PID" 2>/dev/null || fail "the tray exited; see $OUT/tray-ws-a.log"
	DEVICES=$(window 'Handoff .* Devices')
	[ -n "$DEVICES" ] && x xwininfo -id "$DEVICES" 2>/dev/null | grep -q 'Map State: IsViewable'
}
wait_until 60 "the tray opened no Devices window on $A_DISPLAY; see $OUT/tray-ws-a.log (as root on your own display you may need: xhost +si:localuser:root)" devices_window
# Side by side on the private display: the viewer will open on the left.
[ -n "$XVFB_PID" ] && move_window "$DEVICES" 720 30
# Click the app's tile (it sits below the Devices section): this opens its
# viewer window, as a user does. Peers and apps reach the window from the
# daemon's event stream: until the tile is there, clicks open nothing, so
# the clicks go round until a viewer window opens.
eval "$(x xdotool getwindowgeometry --shell "$DEVICES")"
VIEWER=
click_tile() {
	local y
	for y in $(seq 200 24 $((HEIGHT - 40))); do
		x xdotool mousemove --window "$DEVICES" 88 "$y" click 1
		for _ in $(seq 5); do
			VIEWER=$(window 'notes .* on ')
			[ -n "$VIEWER" ] && return 0
			sleep 0.2
		done
	done
	return 1
}
wait_until 60 "clicking the app's tile in the Devices window opened no viewer window; see $OUT/tray-ws-a.log" click_tile
viewer_mapped() { x xwininfo -id "$VIEWER" 2>/dev/null | grep -q 'Map State: IsViewable'; }
wait_until 30 "the viewer window was never shown" viewer_mapped
x xdotool mousemove 0 0
[ -n "$XVFB_PID" ] && move_window "$VIEWER" 30 30
wait_title '^notes .* on ws-a$'
title_before=$(title)
psnr_local=$(viewer_shows a 28)
shot_window "$VIEWER" "$OUT/3-ws-a-viewer-window-app-here.png"
shot_window "$DEVICES" "$OUT/3-ws-a-devices-window.png"
[ -n "$XVFB_PID" ] && x import -window root "$OUT/3-ws-a-desktop.png"
echo "viewer window '$title_before' shows the local display (PSNR $psnr_local dB)"

step "handing 'notes' from ws-a to ws-b (handoff send: the tray's API call); the viewer window stays open"
t0=$(ms)
# The progress file exists before the loop below reads it: the child's own
# redirection would create it only once the child runs, which on a busy
# machine can be after the first read.
: >"$WORK/send-progress.txt"
setsid "$H" --socket "${SOCK[a]}" send notes ws-b >"$OUT/send.txt" 2>>"$WORK/send-progress.txt" &
SEND_PID=$!
# While the app still runs on ws-a (pre-copy), capture the window's progress overlay.
n=0
while kill -0 "$SEND_PID" 2>/dev/null; do
	phase=$(tr '\r' '\n' <"$WORK/send-progress.txt" | tail -1 | awk '{print $1}')
	case "$phase" in
	request | handles | pre-copy)
		n=$((n + 1))
		shot_window "$VIEWER" "$WORK/during-$(printf %03d $n)-$phase.png"
		;;
	freeze | final | restore) break ;; # the app is frozen: leave the CPU to the handoff
	esac
	sleep 0.2
done
if wait "$SEND_PID"; then SEND_PID=; else SEND_PID=; fail "handoff send failed: $(tr '\r' '\n' <"$WORK/send-progress.txt" | tail -2)"; fi
t_send=$(( $(ms) - t0 ))
cat "$OUT/send.txt"
during=$(ls "$WORK"/during-*-pre-copy.png 2>/dev/null | tail -1 || true)
[ -n "$during" ] || during=$(ls "$WORK"/during-*.png 2>/dev/null | tail -1 || true)
if [ -n "$during" ]; then
	cp "$during" "$OUT/4-ws-a-viewer-window-during-handoff.png"
	during_phase=$(basename "$during" .png | cut -d- -f3-)
else
	during_phase="none captured (the handoff was over before the first capture)"
fi
echo "ws-a:"; on a ls; echo "ws-b:"; on b ls

step "ws-a's viewer window shows 'notes' from ws-b's WebRTC stream"
wait_title '^notes .* on ws-b$'
# Until ws-b serves it, the window still shows the last frame from ws-a,
# which looks the same: wait for the viewer's request to reach ws-b.
viewer_on_b() { grep -q 'msg="peer opens a viewer" app=notes' "$OUT/daemon-ws-b.log"; }
wait_until 60 "A's viewer window never asked ws-b for the app's stream (see $OUT/tray-ws-a.log, $OUT/daemon-ws-b.log)" viewer_on_b
title_after=$(title)
psnr_remote=$(viewer_shows b 25)
shot_window "$VIEWER" "$OUT/5-ws-a-viewer-window-streaming-from-ws-b.png"
on b screenshot notes "$OUT/5-ws-b-app-display.png"
[ -n "$XVFB_PID" ] && x import -window root "$OUT/5-ws-a-desktop.png"
echo "viewer window '$title_after' shows ws-b's display (PSNR $psnr_remote dB)"

step "typing into ws-a's viewer window: the keys go to the app on ws-b"
eval "$(x xdotool getwindowgeometry --shell "$VIEWER")"
x xdotool mousemove --window "$VIEWER" 60 $((HEIGHT - APP_H + 60)) click 1
# Keys typed before the window manager gave the window the focus are lost.
viewer_focused() { [ "$(x xdotool getactivewindow 2>/dev/null)" = "$VIEWER" ]; }
wait_until 30 "A's viewer window did not get the keyboard focus" viewer_focused
typed_text="typed in the viewer window on ws-a, runs on ws-b"
type_line() {
	x xdotool type --delay 40 "echo $typed_text | tee /tmp/typed"
	x xdotool key Return
}
# The shell on ws-b writes the line to a file: every key arrived, in order.
# Keys typed while the viewer is still setting up its stream to ws-b are
# lost (as on a screen that is off); the window gives no sign of that, so a
# line that does not arrive within 10 s is cleared (Ctrl+C) and typed again.
pid_b=$(on b ls --json | python3 -c "import json,sys; print([a['pid'] for a in json.load(sys.stdin) if a['name']=='notes'][0])")
type_line
typed_tries=1
end=$(( $(ms) + 60 * WAIT_SCALE * 1000 ))
retype=$(( $(ms) + 10 * WAIT_SCALE * 1000 ))
while got=$(nsenter -t "$pid_b" -m cat /tmp/typed 2>/dev/null || true); [ "$got" != "$typed_text" ]; do
	[ "$(ms)" -lt "$end" ] || fail "the keys typed into A's viewer window ($typed_tries times) did not arrive intact on ws-b within $((60 * WAIT_SCALE)) s: the shell there got '$got'"
	if [ "$(ms)" -gt "$retype" ]; then
		echo "the line typed did not arrive within 10 s: typing it again"
		x xdotool key ctrl+c
		type_line
		typed_tries=$((typed_tries + 1))
		retype=$(( $(ms) + 10 * WAIT_SCALE * 1000 ))
	fi
	sleep 0.2
done
x xdotool mousemove 0 0
wait_settled b "$OUT/5-ws-b-app-display.png"
on b screenshot notes "$OUT/6-ws-b-app-display-after-typing.png"
# The window must show the new line: closer to ws-b's screen after the
# typing than to the one before it.
end=$(( $(ms) + 30 * WAIT_SCALE * 1000 ))
while [ "$(ms)" -lt "$end" ]; do
	psnr_typed=$(viewer_psnr "$OUT/6-ws-b-app-display-after-typing.png")
	psnr_stale=$(viewer_psnr "$OUT/5-ws-b-app-display.png")
	python3 -c "import sys; sys.exit(0 if float('$psnr_typed') > float('$psnr_stale') + 1 else 1)" && break
	sleep 0.5
done
python3 -c "import sys; sys.exit(0 if float('$psnr_typed') > float('$psnr_stale') + 1 else 1)" ||
	fail "A's viewer window does not show what was typed (PSNR $psnr_typed dB against ws-b's screen after typing, $psnr_stale dB before)"
shot_window "$VIEWER" "$OUT/6-ws-a-viewer-window-after-typing.png"

step "check: handoff view --snapshot on ws-a (the viewer's path, without a window) against ws-b's display"
inside a view notes --snapshot "$OUT/6-ws-a-view-snapshot.png" | tee "$OUT/view.txt"
psnr_view=$(compare -metric PSNR "$OUT/6-ws-b-app-display-after-typing.png" "$OUT/6-ws-a-view-snapshot.png" null: 2>&1 || true)

step "bringing it back to ws-a"
t0=$(ms); on a bring-back notes; t_back=$(( $(ms) - t0 ))
wait_title '^notes .* on ws-a$'
psnr_back=$(viewer_shows a 28)
shot_window "$VIEWER" "$OUT/7-ws-a-viewer-window-back-here.png"
on a screenshot notes "$OUT/7-ws-a-app-display-back.png"
diff_resume=$(compare -metric AE "$OUT/1-ws-a-app-display.png" "$OUT/2-ws-a-app-display-resumed.png" null: 2>&1 || true)
diff_send=$(compare -metric AE "$OUT/2-ws-a-app-display-resumed.png" "$OUT/5-ws-b-app-display.png" null: 2>&1 || true)

handoffs() { on "$1" status | sed -n '/^recent handoffs:/,$p' | tail -n +2; }
cat >"$OUT/report.txt" <<REPORT
Handoff demo — $(date -u +%FT%TZ), $(uname -r), CRIU $(criu --version | head -1 | awk '{print $2}'), $(nproc) cores
suspend on ws-a:                   ${t_suspend} ms
resume on ws-a:                    ${t_resume} ms   (screen vs before: ${diff_resume} pixels differ)
send ws-a → ws-b (whole call):     ${t_send} ms    $(sed 's/^.*: //' "$OUT/send.txt")
  screen on ws-b vs ws-a:          ${diff_send} pixels differ
bring back ws-b → ws-a:            ${t_back} ms

A's viewer window (handoff tray on ${A_DISPLAY}), PSNR of its picture against the app's display:
  before the handoff:              ${psnr_local} dB   title "${title_before}", local framebuffer
  during the handoff:              progress overlay captured in phase ${during_phase}
  after the handoff:               ${psnr_remote} dB   title "${title_after}", WebRTC from ws-b
  after typing into the window:    ${psnr_typed} dB   (${psnr_stale} dB against ws-b's screen before); the line arrived intact on ws-b (typed ${typed_tries}×)
  brought back:                    ${psnr_back} dB
handoff view --snapshot on ws-a:   PSNR ${psnr_view} dB against ws-b's screen

handoffs as ws-a's daemon recorded them (← = came in):
$(handoffs a)
as ws-b's daemon recorded them:
$(handoffs b)

the demo script took $(( ($(ms) - T_START) / 1000 )) s
REPORT
step "report"
cat "$OUT/report.txt"
echo
echo "screenshots, report and logs are in $OUT/:"
ls "$OUT"
