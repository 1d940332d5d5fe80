#!/usr/bin/env bash
# install-deps.sh — installs everything Handoff needs to build, test and run on Debian/Ubuntu.
#
# Idempotent: when every package is present and `criu check` passes it returns in seconds.
# CRIU: the distribution's when it passes `criu check` and a real test dump; otherwise (Debian 12
# on kernels newer than its CRIU 3.17 understands) a newer CRIU from Debian sid or trixie is
# unpacked side by side under $HANDOFF_CRIU_PREFIX with its own libc, without touching the system's.
set -euo pipefail

HANDOFF_CRIU_PREFIX=${HANDOFF_CRIU_PREFIX:-/opt/handoff/criu}
CRIU_WRAPPER=${CRIU_WRAPPER:-/usr/local/sbin/criu}
export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
	log "must run as root (it installs packages)"; exit 1
fi

# Packages, grouped by what needs them.
packages=(
	# build: cgo, Fyne (GL + X headers), VP8, colour conversion (libyuv)
	gcc pkg-config libgl1-mesa-dev xorg-dev libvpx-dev libyuv-dev
	# sound: Opus (cgo, hraban/opus, which also links opusfile)
	libopus-dev libopusfile-dev
	# apps run behind a seccomp filter: libcontainer's seccomp support (cgo)
	libseccomp-dev
	# containers and CRIU's runtime needs (iptables locks a container's netns during dump)
	iptables runc iproute2 criu
	# every app's sound server (PulseAudio, run inside its container); the sound
	# tests play tones with sox and pacat and inspect the server with pactl
	pulseaudio pulseaudio-utils sox
	# ALSA-only apps (aplay, speaker-test, old games) reach it through ALSA's pulse plugin
	libasound2-plugins
	# displays, test apps, input, screenshots
	xvfb x11-apps x11-utils xterm xdotool imagemagick dbus-x11
	# make demo: a window manager for the tray's windows on its private Xvfb;
	# make demo-stress: a load generator keeping every core busy meanwhile
	openbox stress-ng
	# the clipboard tests read and set X selections with xclip
	xclip
	# the tray test's real StatusNotifier hosts: xfce4-panel's status tray (GTK,
	# with xfconfd for its settings) and LXQt's panel (Qt)
	xfce4-panel xfconf lxqt-panel
	# a real WebRTC client for the browser viewer test
	chromium
	# mDNS reference implementation for interop tests
	avahi-daemon avahi-utils
	# the peer-by-address tests drop mDNS inside their namespaces (nft)
	nftables
	# trust changes ask polkit (pkcheck); its test runs a private polkitd on a bus of its own
	polkitd dbus-daemon
	# benchmarks
	ffmpeg
	# packaging: make package (dpkg-deb, dpkg-shlibdeps, objcopy), lintian, and
	# systemd-analyze verify for the unit file and its man page (packaging/debtest)
	dpkg-dev binutils lintian systemd man-db
	# test-only: the app matrix (engine/migration/apps_integration_test.go) hands
	# these real desktop apps around: GTK 3, GTK 4, Qt 5, Qt 6, Gecko, Blink,
	# LibreOffice's VCL, and vim in xterm (Xt)
	mousepad geany gnome-text-editor featherpad focuswriter firefox-esr
	libreoffice-writer vim
	# misc used by tests and scripts
	procps psmisc ca-certificates curl python3 util-linux
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing: ${missing[*]}"
	apt-get update -qq
	# avahi-daemon's postinst tries to start the service; policy-rc.d keeps package
	# installs from starting daemons we start ourselves inside test namespaces.
	prc=/usr/sbin/policy-rc.d; created_prc=
	if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' >$prc; chmod +x $prc; created_prc=1; fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[ -n "$created_prc" ] && rm -f $prc
fi

# Handoff runs the pulseaudio binary inside each app's container only. Debian's
# pulseaudio package also enables its per-user service for every desktop
# session, which would fight a PipeWire desktop's pipewire-pulse for the
# session's sound: leave the desktop's sound to PipeWire where it has it.
if dpkg-query -W -f='${Status}' pipewire-pulse 2>/dev/null | grep -q 'install ok installed' &&
	systemctl --global is-enabled pulseaudio.socket >/dev/null 2>&1; then
	log "pipewire-pulse serves the desktop: disabling pulseaudio's per-user service (apps' containers still use pulseaudio)"
	systemctl --global disable pulseaudio.service pulseaudio.socket >/dev/null 2>&1 || true
fi

# criu_ok runs `criu check` and then a real dump of a scratch process: on some
# kernels `criu check` passes while every dump hangs (CRIU 4.1.1 on Linux 6.18
# waits forever for the parasite's rt_sigreturn), so only a dump proves it works.
criu_ok() {
	local criu=$1 dir pid rc
	"$criu" check >/dev/null 2>&1 || return 1
	dir=$(mktemp -d)
	setsid sleep 600 </dev/null >/dev/null 2>&1 &
	pid=$!
	disown "$pid"
	timeout 15 "$criu" dump -t "$pid" -D "$dir" -o dump.log --shell-job >/dev/null 2>&1
	rc=$?
	kill -9 "$pid" 2>/dev/null
	[ $rc = 0 ] || log "$criu: 'criu check' passes but a test dump failed ($(tail -1 "$dir/dump.log" 2>/dev/null))"
	rm -rf "$dir"
	return $rc
}

# 1. A criu on PATH that works (the distribution's, or an earlier side-by-side install).
if criu_ok criu; then
	exit 0
fi
if [ -x "$CRIU_WRAPPER" ] && criu_ok "$CRIU_WRAPPER"; then
	exit 0
fi

# 2. Side-by-side CRIU from a newer Debian suite, newest first, with its own libc.
log "no working CRIU on PATH ($(criu --version 2>/dev/null | head -1 || echo none)); installing a newer CRIU side by side in $HANDOFF_CRIU_PREFIX"
mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
	| grep -oE 'https?://[^ ]+' | grep -v security | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
libs=(criu libcompel1 libc6 libbsd0 libgnutls30t64 libnet9 libnet1 libnftables1 libnl-3-200 libprotobuf-c1
	libuuid1 libmd0 libp11-kit0 libidn2-0 libunistring5 libtasn1-6 libnettle8t64 libhogweed6t64
	libgmp10 libffi8 libmnl0 libnftnl11 libxtables12 libjansson4 libedit2 libtinfo6 libgcc-s1
	libzstd1 libgcrypt20 libgpg-error0)
install_from() {
	local suite=$1 w=$work/$1 P=$HANDOFF_CRIU_PREFIX
	mkdir -p "$w/lists/partial" "$w/debs"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$w/sources.list"
	local aptopts=(-o "Dir::Etc::sourcelist=$w/sources.list" -o Dir::Etc::sourceparts=-
		-o "Dir::State::Lists=$w/lists" -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1
		-o APT::Sandbox::User=root)
	apt-get "${aptopts[@]}" update -qq || return 1
	# Library names differ between suites (libnet1 became libnet9): take what exists.
	(cd "$w/debs" && for l in "${libs[@]}"; do apt-get "${aptopts[@]}" download "$l" >/dev/null 2>&1 || true; done)
	ls "$w"/debs/criu_*.deb >/dev/null 2>&1 || return 1
	rm -rf "$P.new" && mkdir -p "$P.new"
	for d in "$w"/debs/*.deb; do dpkg -x "$d" "$P.new"; done
	cat >"$w/criu" <<WRAP
#!/bin/sh
# Installed by Handoff's install-deps.sh: CRIU from Debian $suite with its own libc.
exec $P/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path $P/usr/lib/x86_64-linux-gnu:$P/lib/x86_64-linux-gnu $P/usr/sbin/criu "\$@"
WRAP
	chmod 0755 "$w/criu"
	rm -rf "$P.old"; [ -e "$P" ] && mv "$P" "$P.old"
	mv "$P.new" "$P"
	if criu_ok "$w/criu"; then
		rm -rf "$P.old"
		mkdir -p "$(dirname "$CRIU_WRAPPER")"
		install -m 0755 "$w/criu" "$CRIU_WRAPPER"
		log "CRIU $("$CRIU_WRAPPER" --version | head -1) from Debian $suite installed at $CRIU_WRAPPER"
		return 0
	fi
	rm -rf "$P"; [ -e "$P.old" ] && mv "$P.old" "$P"
	return 1
}
for suite in ${HANDOFF_CRIU_SUITES:-sid trixie}; do
	install_from "$suite" && exit 0
	log "CRIU from Debian $suite does not work here"
done
log "no working CRIU found: checkpointing will not work (see 'criu check' and README troubleshooting)"
exit 1
