// Package debtest holds the integration test of Handoff's Debian package
// (`make package`, packaging/build-deb.sh, packaging/deb). It has no code of
// its own: the test (build tag integration, root) builds the .deb into a
// temporary directory, checks its contents, lintian and the systemd unit,
// installs it on this machine with dpkg, runs the installed daemon for one
// suspend and resume, reinstalls to prove the maintainer scripts idempotent,
// and purges it again, even when a step fails. It never starts the systemd
// service, and it skips when a handoff package is already installed here.
// TestFynePackage runs `make fyne-package` (fyne package -os linux from
// FyneApp.toml) and checks the tarball and its desktop entry.
package debtest
