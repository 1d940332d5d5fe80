#!/usr/bin/env bash
# fyne-package.sh [OUTDIR] — `fyne package -os linux` from FyneApp.toml, for
# bin/handoff (make build): OUTDIR/Handoff.tar.xz (default dist/) holds the
# binary, the desktop entry and the icon, with a Makefile that installs them
# under /usr/local. Installs the fyne CLI ($FYNE_VERSION, from the Go module
# proxy) into bin/tools when it is not there. Then checks what it made: the
# binary runs, the icon is assets/icon.png, and the desktop entry says what
# the .deb's (packaging/deb/handoff.desktop) says, so the two cannot drift.
set -euo pipefail
cd "$(dirname "$0")/.."
FYNE_VERSION=${FYNE_VERSION:-v1.7.4}
out=${1:-dist}
fyne=$PWD/bin/tools/fyne

log() { printf 'fyne-package: %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

[ -x bin/handoff ] || fail "bin/handoff is missing; run make build (or make fyne-package)"
have=$("$fyne" version 2>/dev/null || true)
if [[ "$have" != *"fyne cli version: $FYNE_VERSION"* ]]; then
	log "installing the fyne CLI $FYNE_VERSION into bin/tools"
	GOBIN=$PWD/bin/tools go install "fyne.io/tools/cmd/fyne@$FYNE_VERSION" ||
		fail "cannot install fyne.io/tools/cmd/fyne@$FYNE_VERSION (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
fi

icon=$(sed -n 's/^Icon *= *"\([^"]*\)".*/\1/p' FyneApp.toml | head -1)
[ -f "$icon" ] || fail "FyneApp.toml names the icon '$icon', which does not exist"
work=$(mktemp -d)
# fyne package reads FyneApp.toml from the source dir (it wants Go code
# there too, though it packages the given binary) and writes its tarball
# there: it is moved out at once, and removed on failure. It also rewrites
# FyneApp.toml (Build + 1, comments dropped): put back as it was.
tarball=$PWD/$(sed -n 's/^Name *= *"\([^"]*\)".*/\1/p' FyneApp.toml | head -1).tar.xz
cp FyneApp.toml "$work/FyneApp.toml"
trap 'cp "$work/FyneApp.toml" FyneApp.toml; rm -rf "$work" "$tarball"' EXIT
cp bin/handoff "$work/handoff"
"$fyne" package -os linux --exe "$work/handoff" >&2 || fail "fyne package failed (see above)"
[ -f "$tarball" ] || fail "fyne package made no $(basename "$tarball")"
mv "$tarball" "$work/"
tarball=$work/$(basename "$tarball")

# Check it.
mkdir "$work/x"
tar -xJf "$tarball" -C "$work/x"
root=$work/x/handoff/usr/local
[ -x "$root/bin/handoff" ] || fail "the tarball has no usr/local/bin/handoff"
"$root/bin/handoff" --version >/dev/null || fail "the packaged handoff does not run"
appid=$(sed -n 's/^ID *= *"\([^"]*\)".*/\1/p' FyneApp.toml | head -1)
cmp -s "$root/share/pixmaps/$appid.png" "$icon" || fail "the tarball's icon is not $icon"
entry=$root/share/applications/$appid.desktop
[ -f "$entry" ] || fail "the tarball has no desktop entry $appid.desktop"
# key FILE KEY: the value of KEY in a desktop entry.
key() { sed -n "s/^$2=//p" "$1" | head -1; }
bad=0
for k in Name GenericName Comment Exec Icon Categories Keywords; do
	got=$(key "$entry" "$k") want=$(key packaging/deb/handoff.desktop "$k")
	if [ "$got" != "$want" ]; then
		log "desktop entry: $k=$got, but packaging/deb/handoff.desktop has $k=$want (fix FyneApp.toml or that file)"
		bad=1
	fi
done
[ "$bad" = 0 ] || fail "FyneApp.toml and packaging/deb/handoff.desktop disagree"

mkdir -p "$out"
cp "$tarball" "$out/"
echo "$out/$(basename "$tarball")"
