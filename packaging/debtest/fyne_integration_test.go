//go:build integration

package debtest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFynePackage runs `make fyne-package`: fyne package -os linux from
// FyneApp.toml, whose script checks the desktop entry against the .deb's
// (packaging/fyne-package.sh); here the tarball's contents are checked too,
// and that FyneApp.toml is left as it was.
func TestFynePackage(t *testing.T) {
	dist := t.TempDir()
	toml := filepath.Join(repoRoot(t), "FyneApp.toml")
	before := readFile(t, toml)
	out, err := exec.Command("make", "-C", repoRoot(t), "fyne-package", "DIST="+dist).CombinedOutput()
	if err != nil {
		t.Fatalf("make fyne-package: %v\n%s", err, out)
	}
	// fyne package rewrites it (build number, comments): the script puts it back.
	if after := readFile(t, toml); after != before {
		t.Errorf("make fyne-package changed FyneApp.toml:\n%s", after)
	}
	tarball := filepath.Join(dist, "Handoff.tar.xz")
	listing := run(t, "tar", "-tJf", tarball)
	for _, want := range []string{
		"handoff/Makefile",
		"handoff/usr/local/bin/handoff",
		"handoff/usr/local/share/applications/dev.handoff.Handoff.desktop",
		"handoff/usr/local/share/pixmaps/dev.handoff.Handoff.png",
	} {
		if !strings.Contains(listing, want+"\n") {
			t.Errorf("%s lacks %s:\n%s", tarball, want, listing)
		}
	}
	entry := run(t, "tar", "-xJOf", tarball, "handoff/usr/local/share/applications/dev.handoff.Handoff.desktop")
	for _, want := range []string{"\nName=Handoff\n", "\nExec=handoff tray\n", "\nIcon=dev.handoff.Handoff\n", "\nCategories=Utility;\n"} {
		if !strings.Contains(entry, want) {
			t.Errorf("desktop entry lacks %q:\n%s", strings.TrimSpace(want), entry)
		}
	}
}
