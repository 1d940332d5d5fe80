#!/usr/bin/env bash
# build-deb.sh — builds dist/handoff_<version>_<arch>.deb (`make package`).
#
#   packaging/build-deb.sh [OUTDIR]     (default: dist)
#
# The package is laid out in a scratch tree from packaging/deb/ and built with
# `dpkg-deb --build --root-owner-group`. Version: `git describe --tags` when a
# tag names a version, otherwise FyneApp.toml's version plus the commit's date
# and hash (0.1.0+git20260101.abc1234), with Debian revision -1; DEB_VERSION
# overrides it. The binary, built from the working tree like `make build`,
# gets the upstream part as app.Version.
# Needs: go, gcc and the -dev packages of `make deps`, dpkg-dev.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
GO=${GO:-go}

log() { printf 'build-deb: %s\n' "$*" >&2; }

# --- version -----------------------------------------------------------------
commit_epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$commit_epoch}

upstream_version() {
	local desc tag extra= base
	desc=$(git describe --tags --always 2>/dev/null || true)
	# A bare commit hash (no tag) falls through to FyneApp.toml's version.
	if [ -n "$desc" ] && [[ $(git rev-parse HEAD) != "$desc"* ]]; then
		# v1.2.3 → 1.2.3; v1.2.3-4-gabc1234 → 1.2.3+git4.abc1234;
		# v1.3.0-rc1 → 1.3.0~rc1 (sorts before 1.3.0).
		tag=$desc
		if [[ $desc =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
			tag=${BASH_REMATCH[1]} extra="+git${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
		fi
		tag=${tag#v}
		if [[ $tag =~ ^[0-9] ]]; then
			printf '%s%s\n' "${tag//-/\~}" "$extra"
			return
		fi
	fi
	base=$(sed -n 's/^Version *= *"\([^"]*\)".*/\1/p' FyneApp.toml | head -1)
	printf '%s+git%s.%s\n' "${base:-0.1.0}" \
		"$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d)" \
		"$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)"
}
if [ -n "${DEB_VERSION:-}" ]; then
	version=$DEB_VERSION
else
	# Characters a Debian upstream version may not contain become dots.
	version="$(upstream_version | tr -c 'A-Za-z0-9.+~\n' '.')-1"
fi
upstream=${version%-*}
arch=$(dpkg --print-architecture)
maintainer="${DEBFULLNAME:-Handoff maintainers} <${DEBEMAIL:-$(git log -1 --format=%ae 2>/dev/null || echo root@localhost)}>"
deb="$out/handoff_${version}_${arch}.deb"
log "building handoff $version ($arch)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
umask 022

# --- the binary ----------------------------------------------------------------
# Debian's hardening flags for the C parts (libvpx binding, GLFW, nsenter),
# a position-independent executable, no symbol tables (Debian strips).
eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
install -d "$stage/usr/bin"
CGO_CFLAGS="$CPPFLAGS $CFLAGS" CGO_LDFLAGS="$LDFLAGS" \
	$GO build -trimpath -buildmode=pie -tags seccomp \
	-ldflags "-s -w -X github.com/handoff/handoff/app.Version=$upstream" \
	-o "$stage/usr/bin/handoff" .
objcopy --remove-section=.comment "$stage/usr/bin/handoff" # the C compiler's version strings

# --- files ---------------------------------------------------------------------
d=packaging/deb
install -D -m 0644 $d/handoffd.service "$stage/lib/systemd/system/handoffd.service"
install -D -m 0644 $d/handoff-tray.desktop "$stage/etc/xdg/autostart/handoff-tray.desktop"
install -D -m 0644 $d/handoff.desktop "$stage/usr/share/applications/handoff.desktop"
size=$(file -b assets/icon.png | sed -n 's/.* \([0-9]*\) x \([0-9]*\),.*/\1x\2/p')
install -D -m 0644 assets/icon.png "$stage/usr/share/icons/hicolor/${size:-256x256}/apps/dev.handoff.Handoff.png"
install -D -m 0755 packaging/install-deps.sh "$stage/usr/share/handoff/install-deps.sh"
# The polkit action the daemon asks about before trust changes (app/admin.go).
install -D -m 0644 $d/dev.handoff.policy "$stage/usr/share/polkit-1/actions/dev.handoff.policy"
install -d "$stage/usr/share/man/man1" "$stage/usr/share/doc/handoff"
gzip -9n <$d/handoff.1 >"$stage/usr/share/man/man1/handoff.1.gz"
if [ -f $d/lintian-overrides ]; then
	install -D -m 0644 $d/lintian-overrides "$stage/usr/share/lintian/overrides/handoff"
fi

# changelog.Debian: one entry for this build.
{
	printf 'handoff (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from commit %s.\n\n' "$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
	printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$stage/usr/share/doc/handoff/changelog.Debian.gz"

# copyright: Handoff's own paragraph, then one per Go module compiled in.
license_name() { # the DEP-5 short name of a license text
	local f=$1
	if grep -q 'Apache License' "$f" && grep -q 'Version 2.0' "$f"; then echo Apache-2.0
	elif grep -q 'Mozilla Public License' "$f"; then echo MPL-2.0
	elif grep -qi 'SIL OPEN FONT LICENSE' "$f"; then echo OFL-1.1
	elif grep -q 'Permission is hereby granted, free of charge' "$f"; then
		if grep -q 'Bitstream' "$f"; then echo Bitstream-Vera; else echo Expat; fi
	elif grep -q 'Redistribution and use in source and binary forms' "$f"; then
		if grep -qiE 'Neither the name|names of (its|the) contributors|name of the copyright holder' "$f"; then
			echo BSD-3-Clause
		else echo BSD-2-Clause; fi
	elif grep -qE 'Permission to use, copy, modify, and(/or)? distribute this software for any' "$f"; then echo ISC
	elif grep -q "provided 'as-is'" "$f"; then echo Zlib
	else echo "other-$(basename "$f" | tr -c 'A-Za-z0-9\n' -)"
	fi
}
indent() { sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /'; }
copyright_paragraph() { # import path, directory, license files…
	local files=$1 dir=$2 f name names=() holders
	shift 2
	holders=$(grep -hiE '^[[:space:]]*(copyright|©)[[:space:]]*(\(c\)|©|[0-9])' "$@" | sed 's/^[[:space:]]*//' | sort -u || true)
	for f in "$@"; do
		name=$(license_name "$f")
		[[ " ${names[*]} " == *" $name "* ]] || names+=("$name")
	done
	printf '\nFiles: %s\nCopyright: %s\n' "$files" "$(printf '%s\n' "${holders:-The authors of $files}" | sed '2,$s/^/ /')"
	printf 'License: %s\n' "$(IFS='|'; echo "${names[*]}" | sed 's/|/ and /g')"
	for f in "$@"; do
		case $(license_name "$f") in
		Apache-2.0 | MPL-2.0) printf ' On Debian systems the full text of the %s license is in\n /usr/share/common-licenses/%s.\n' "$(license_name "$f")" "$(license_name "$f")" ;;
		*) indent <"$f" ;;
		esac
		[ "$f" = "${!#}" ] || printf ' .\n'
	done
	local notices=("$dir"/NOTICE*)
	if [ -f "${notices[0]}" ]; then
		printf 'Comment: The NOTICE of %s:\n' "${files%/\*}"
		cat "${notices[@]}" | indent
	fi
	return 0
}
{
	cat $d/copyright
	copyright_paragraph "go/*" "$($GO env GOROOT)" "$($GO env GOROOT)/LICENSE"
	# Every module with a package in the binary; license files at its root and
	# next to compiled packages (GLFW's C sources, Fyne's fonts).
	$GO list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}}	{{.Dir}}{{end}}{{end}}	{{.Dir}}' . |
		awk -F'\t' '$1 != ""' | sort >"$stage/pkgs"
	cut -f1,2 "$stage/pkgs" | sort -u | while IFS=$'\t' read -r mod dir; do
		mapfile -t lic < <(find "$dir" -maxdepth 1 -type f \( -iname 'licen[cs]e*' -o -iname 'copying*' \) ! -iname '*.md' | sort)
		[ ${#lic[@]} -gt 0 ] || mapfile -t lic < <(find "$dir" -maxdepth 1 -type f \( -iname 'licen[cs]e*' -o -iname 'copying*' \) | sort)
		if [ ${#lic[@]} -eq 0 ]; then log "no license file in $mod"; exit 1; fi
		copyright_paragraph "$mod/*" "$dir" "${lic[@]}"
		awk -F'\t' -v m="$mod" '$1 == m {print $3}' "$stage/pkgs" | while read -r pkgdir; do
			find "$pkgdir" -mindepth 1 -maxdepth 2 -type f \( -iname 'licen[cs]e*' -o -iname 'ofl*.txt' \) ! -path '*/testdata/*'
		done | sort -u | while read -r extra; do
			if [ "$(dirname "$extra")" != "$dir" ]; then printf '%s\t%s\n' "$(dirname "$extra")" "$extra"; fi
		done | awk -F'\t' '{f[$1] = f[$1] "\t" $2} END {for (d in f) print d f[d]}' | sort |
			while IFS=$'\t' read -r -a group; do
				copyright_paragraph "$mod/${group[0]#"$dir"/}/*" "${group[0]}" "${group[@]:1}"
			done
	done
} >"$stage/usr/share/doc/handoff/copyright"
rm -f "$stage/pkgs"
chmod 0644 "$stage/usr/share/doc/handoff/copyright"

# --- control -------------------------------------------------------------------
scratch=$(mktemp -d)
mkdir -p "$scratch/debian"
printf 'Source: handoff\n\nPackage: handoff\nArchitecture: any\n' >"$scratch/debian/control"
shlibs=$(cd "$scratch" && dpkg-shlibdeps -O "$stage/usr/bin/handoff" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$scratch"
[ -n "$shlibs" ] || { log "dpkg-shlibdeps found no libraries"; exit 1; }

install -d -m 0755 "$stage/DEBIAN"
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
	-e "s|@INSTALLED_SIZE@|$installed_size|" -e "s|@SHLIBS@|$shlibs|" \
	$d/control.in >"$stage/DEBIAN/control"
install -m 0644 $d/conffiles "$stage/DEBIAN/conffiles"
install -m 0755 $d/postinst $d/prerm $d/postrm "$stage/DEBIAN/"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums"

# Reproducible: every file dated to the commit.
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$out"/handoff_*_"$arch".deb
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
log "wrote $deb"
echo "$deb"
