//go:build integration

package debtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/handoff/handoff/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installed are files the package puts on the system, checked after install
// and, after the purge, checked gone.
var installed = []string{
	"/usr/bin/handoff",
	"/lib/systemd/system/handoffd.service",
	"/etc/xdg/autostart/handoff-tray.desktop",
	"/usr/share/applications/handoff.desktop",
	"/usr/share/icons/hicolor/256x256/apps/dev.handoff.Handoff.png",
	"/usr/share/handoff/install-deps.sh",
	"/usr/share/polkit-1/actions/dev.handoff.policy",
	"/usr/share/doc/handoff/copyright",
	"/usr/share/doc/handoff/changelog.Debian.gz",
	"/usr/share/man/man1/handoff.1.gz",
}

// Left by postinst (deb-systemd-helper enable) and removed by the purge.
const enabledLink = "/etc/systemd/system/multi-user.target.wants/handoffd.service"

func TestDebPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs and purges a package")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "handoff").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Skip("a handoff package is installed on this machine; the test would purge it")
	}
	// Purging deletes the daemon's state and runtime dirs: never those of a
	// daemon someone runs here by hand.
	for _, dir := range []string{"/var/lib/handoff", "/run/handoff"} {
		if _, err := os.Stat(dir); err == nil {
			t.Skipf("%s exists (a Handoff daemon ran here); the test's purge would delete it", dir)
		}
	}
	keepServicesStopped(t)

	deb := buildPackage(t)
	t.Logf("built %s", deb)

	t.Run("contents", func(t *testing.T) { checkContents(t, deb) })
	t.Run("control", func(t *testing.T) { checkControl(t, deb) })
	t.Run("lintian", func(t *testing.T) { checkLintian(t, deb) })

	// Registered before the install starts, so that a failing install is
	// purged too. The group may exist already (created by hand for the
	// daemon's socket): then it is put back as it was after the purge.
	groupBefore := getent(t, "handoff")
	t.Cleanup(func() { purge(t, groupBefore) })

	run(t, "dpkg", "-i", deb)
	checkInstalled(t)
	noDaemonStarted(t)
	if got := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "handoff"); !strings.Contains(got, "/etc/xdg/autostart/handoff-tray.desktop") {
		t.Errorf("the autostart entry is not a conffile: %q", got)
	}
	t.Run("unit", checkUnit)
	t.Run("daemon", checkDaemon)
	// State such as the service's daemon leaves behind, for the purge to remove.
	if err := os.MkdirAll("/var/lib/handoff/identity", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/var/lib/handoff/identity/key.pem", []byte("test"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Idempotence: install the same package again (prerm upgrade, postinst
	// configure VERSION), then run postinst once more by hand.
	run(t, "dpkg", "-i", deb)
	version := strings.TrimSpace(run(t, "dpkg-query", "-W", "-f=${Version}", "handoff"))
	run(t, "/var/lib/dpkg/info/handoff.postinst", "configure", version)
	checkInstalled(t)
	noDaemonStarted(t)
	if n := strings.Count("\n"+readFile(t, "/etc/group"), "\nhandoff:"); n != 1 {
		t.Errorf("/etc/group has %d handoff groups after configuring three times, want 1", n)
	}
}

// keepServicesStopped makes sure installing cannot start handoffd: where
// systemd is PID 1, a policy-rc.d that denies every start (which
// deb-systemd-invoke honours) is in place while the test runs.
func keepServicesStopped(t *testing.T) {
	comm := strings.TrimSpace(run(t, "ps", "-p", "1", "-o", "comm="))
	t.Logf("PID 1 is %q", comm)
	if comm != "systemd" {
		return
	}
	const prc = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(prc); err == nil {
		t.Logf("%s exists; trusting it to keep handoffd from starting", prc)
		return
	}
	if err := os.WriteFile(prc, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(prc) })
}

// buildPackage runs `make package` into a temporary directory.
func buildPackage(t *testing.T) string {
	dist := t.TempDir()
	cmd := exec.Command("make", "-C", repoRoot(t), "package", "DIST="+dist)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "handoff_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make package made %v in %s, want one handoff_*_amd64.deb\n%s", debs, dist, out)
	}
	return debs[0]
}

func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the test's source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func checkContents(t *testing.T, deb string) {
	listing := run(t, "dpkg-deb", "-c", deb)
	entries := map[string]string{} // path → "mode owner"
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("unexpected dpkg-deb -c line %q", line)
		}
		path := strings.TrimPrefix(f[5], ".")
		entries[strings.TrimSuffix(path, "/")] = f[0] + " " + f[1]
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", path, f[1])
		}
	}
	for _, p := range installed {
		if _, ok := entries[p]; !ok {
			t.Errorf("the package lacks %s", p)
		}
	}
	for p, want := range map[string]string{
		"/usr/bin/handoff":                     "-rwxr-xr-x",
		"/usr/share/handoff/install-deps.sh":   "-rwxr-xr-x",
		"/lib/systemd/system/handoffd.service": "-rw-r--r--",
		"":                                     "drwxr-xr-x", // the root directory
	} {
		if got, _, _ := strings.Cut(entries[p], " "); got != want {
			t.Errorf("%q has mode %s, want %s", p, got, want)
		}
	}
	// The copy of install-deps.sh is the one in the repository.
	x := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, x)
	if a, b := readFile(t, filepath.Join(x, "usr/share/handoff/install-deps.sh")), readFile(t, filepath.Join(repoRoot(t), "packaging/install-deps.sh")); a != b {
		t.Error("usr/share/handoff/install-deps.sh differs from packaging/install-deps.sh")
	}
}

func checkControl(t *testing.T, deb string) {
	field := func(name string) string {
		return strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, name))
	}
	if got := field("Package"); got != "handoff" {
		t.Errorf("Package: %q", got)
	}
	if got := field("Architecture"); got != "amd64" {
		t.Errorf("Architecture: %q", got)
	}
	if v := field("Version"); !strings.Contains(filepath.Base(deb), "_"+v+"_") {
		t.Errorf("Version %q does not match the file name %s", v, filepath.Base(deb))
	}
	depends := field("Depends")
	for _, want := range []string{"libc6", "libvpx7", "libgl1", "libx11-6", "xvfb", "iptables", "adduser"} {
		if !strings.Contains(depends, want) {
			t.Errorf("Depends lacks %s: %s", want, depends)
		}
	}
	if strings.Contains(depends, "criu") {
		t.Errorf("Depends names criu (Debian 12's is too old; it is only recommended): %s", depends)
	}
	if rec := field("Recommends"); !strings.Contains(rec, "criu") {
		t.Errorf("Recommends lacks criu: %s", rec)
	}
	info := run(t, "dpkg-deb", "-I", deb)
	for _, s := range []string{"postinst", "prerm", "postrm", "conffiles", "md5sums"} {
		if !strings.Contains(info, " "+s+" ") {
			t.Errorf("control archive lacks %s:\n%s", s, info)
		}
	}
}

// checkLintian fails on lintian errors and logs everything else.
func checkLintian(t *testing.T, deb string) {
	out, err := exec.Command("lintian", deb).CombinedOutput()
	t.Logf("lintian:\n%s", out)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") {
			t.Errorf("lintian error: %s", line)
		}
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("lintian: %v", err)
	}
}

func checkInstalled(t *testing.T) {
	t.Helper()
	for _, p := range installed {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after install: %v", err)
		}
	}
	out := run(t, "/usr/bin/handoff", "--version")
	if !strings.HasPrefix(out, "handoff ") {
		t.Errorf("handoff --version printed %q", out)
	}
	if getent(t, "handoff") == "" {
		t.Error("no handoff group after install")
	}
	if _, err := os.Lstat(enabledLink); err != nil {
		t.Errorf("handoffd.service is not enabled: %v", err)
	}
}

// noDaemonStarted checks that installing started no handoff daemon.
func noDaemonStarted(t *testing.T) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && exe == "/usr/bin/handoff" {
			cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
			t.Errorf("installing started %s (%s)", p, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
}

// checkUnit verifies the installed unit file (its ExecStart binary and its
// man page are in place now).
func checkUnit(t *testing.T) {
	out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/handoffd.service").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// checkDaemon runs the installed binary as the daemon would (the unit's
// command, with a state dir and socket of its own) and has it start, suspend,
// resume and stop one app: the packaged binary (PIE, stripped, hardened C
// flags) must still start containers and run CRIU.
func checkDaemon(t *testing.T) {
	dir := testutil.StateDir(t)
	sock := filepath.Join(dir, "handoff.sock")
	daemon := exec.Command("/usr/bin/handoff", "--socket", sock, "daemon", "--state-dir", filepath.Join(dir, "state"),
		"--listen", "127.0.0.1:0", "--no-mdns", "--web", "")
	var log bytes.Buffer
	daemon.Stdout, daemon.Stderr = &log, &log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- daemon.Wait() }()
	t.Cleanup(func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = daemon.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	})
	cli := func(args ...string) string {
		t.Helper()
		return run(t, "/usr/bin/handoff", append([]string{"--socket", sock}, args...)...)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the daemon ended: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket after 20 s\n%s", log.String())
		}
	}
	// The package's group may use the socket.
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if gid := strings.Split(getent(t, "handoff"), ":"); len(gid) < 3 || fmt.Sprint(st.Gid) != gid[2] || st.Mode&0o777 != 0o660 {
		t.Errorf("socket is mode %o gid %d, want 660 and the handoff group (%v)", st.Mode&0o777, st.Gid, gid)
	}
	t.Log(cli("status"))
	cli("run", "--as", testutil.AppUser(t), "--name", "debtest", "--", "sleep", "600")
	t.Cleanup(func() { _, _ = exec.Command("/usr/bin/handoff", "--socket", sock, "stop", "debtest").CombinedOutput() })
	cli("suspend", "debtest")
	if s := appState(t, cli("ls", "--json")); s != "suspended" {
		t.Errorf("after suspend the app is %q", s)
	}
	cli("resume", "debtest")
	if s := appState(t, cli("ls", "--json")); s != "running" {
		t.Errorf("after resume the app is %q", s)
	}
	cli("stop", "debtest")
}

func appState(t *testing.T, lsJSON string) string {
	t.Helper()
	var apps []map[string]any
	if err := json.Unmarshal([]byte(lsJSON), &apps); err != nil {
		t.Fatalf("handoff ls --json: %v\n%s", err, lsJSON)
	}
	for _, a := range apps {
		if a["name"] == "debtest" {
			s, _ := a["state"].(string)
			return s
		}
	}
	return "missing"
}

// purge removes the package and checks that it took its files, state,
// enablement and group with it. A group that existed before the test is
// created again afterwards, with its GID and members.
func purge(t *testing.T, groupBefore string) {
	out, err := exec.Command("dpkg", "--purge", "handoff").CombinedOutput()
	if err != nil {
		t.Errorf("dpkg --purge handoff: %v\n%s", err, out)
	}
	for _, p := range append(installed, enabledLink, "/var/lib/handoff", "/usr/share/handoff",
		"/var/lib/systemd/deb-systemd-helper-enabled/handoffd.service.dsh-also") {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("after purge %s is still there", p)
		}
	}
	if g := getent(t, "handoff"); g != "" {
		t.Errorf("after purge the handoff group is still there: %s", g)
	}
	if groupBefore != "" {
		f := strings.Split(groupBefore, ":")
		args := []string{"--system", "--gid", f[2]}
		if f[3] != "" {
			args = append(args, "--users", f[3])
		}
		if out, err := exec.Command("groupadd", append(args, "handoff")...).CombinedOutput(); err != nil {
			t.Errorf("put the handoff group back (%s): %v\n%s", groupBefore, err, out)
		}
	}
}

// getent returns the group's line of `getent group`, or "" when there is none.
func getent(t *testing.T, group string) string {
	out, err := exec.Command("getent", "group", group).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return ""
	}
	if err != nil {
		t.Fatalf("getent group %s: %v", group, err)
	}
	return strings.TrimSpace(string(out))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
