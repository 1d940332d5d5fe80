//go:build integration

package app

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff/handoff/discovery"
)

// privatePolkit runs a real polkitd on a D-Bus system bus of its own, in a
// mount namespace where the actions are only ours
// (packaging/deb/dev.handoff.policy) and one rule decides: the user nobody
// may change trust, nobody else. Nothing of the machine's own D-Bus or
// polkit is touched; both processes are stopped by PID when the test ends.
func privatePolkit(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"dbus-daemon", "pkcheck", "/usr/lib/polkit-1/polkitd", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing: make deps installs polkitd and dbus", bin)
		}
	}
	dir, err := os.MkdirTemp("", "handoff-polkit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // polkitd drops to its own user, then connects to the bus here
	for _, d := range []string{"actions", "rules"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	policy, err := os.ReadFile("../packaging/deb/dev.handoff.policy")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("actions/dev.handoff.policy", string(policy))
	write("rules/10-test.rules", `polkit.addRule(function(action, subject) {
  if (action.id == "dev.handoff.trust") {
    return subject.user == "nobody" ? polkit.Result.YES : polkit.Result.NO;
  }
});
`)
	bus := filepath.Join(dir, "bus")
	write("bus.conf", `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+bus+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`)
	start := func(name string, cmd *exec.Cmd) {
		log, _ := os.Create(filepath.Join(dir, name+".log"))
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				data, _ := os.ReadFile(filepath.Join(dir, name+".log"))
				t.Logf("%s:\n%s", name, data)
			}
		})
	}
	start("dbus-daemon", exec.Command("dbus-daemon", "--config-file="+filepath.Join(dir, "bus.conf"), "--nofork"))
	for i := 0; ; i++ {
		if _, err := os.Stat(bus); err == nil {
			break
		}
		if i > 100 {
			t.Fatal("the private system bus did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+bus)
	start("polkitd", exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		fmt.Sprintf("mount --bind %s/actions /usr/share/polkit-1/actions && mount --bind %s/rules /etc/polkit-1/rules.d && exec /usr/lib/polkit-1/polkitd --no-debug", dir, dir)))
	// Ready once it answers about an action it knows.
	for i := 0; ; i++ {
		out, _ := exec.Command("pkcheck", "--action-id", polkitTrustAction, "--process", fmt.Sprint(os.Getpid())).CombinedOutput()
		if !strings.Contains(string(out), "ServiceUnknown") && !strings.Contains(string(out), "not registered") {
			break
		}
		if i > 100 {
			t.Fatalf("polkitd did not come up: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// asUser starts a process of uid that waits; it stands for a client of the
// local API run by that user.
func asUser(t *testing.T, uid uint32) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// TestPolkitDecides: a caller who is not root may change trust when polkit
// says yes for dev.handoff.trust, and is refused with words when it says
// no; a client process that exited (its PID may be reused) is refused.
func TestPolkitDecides(t *testing.T) {
	privatePolkit(t)
	h := peersTestHandler(t)
	id := discovery.IDFromCert([]byte("ws-b"))
	ask := func(proc *exec.Cmd, uid uint32) (int, string) {
		t.Helper()
		return trustRequestFrom(t, h, int32(proc.Process.Pid), uid, id)
	}

	code, msg := ask(asUser(t, 1), 1) // the "daemon" user: the rule says no
	if code != 403 || !strings.Contains(msg, "trusting a device needs an administrator") || !strings.Contains(msg, "did not authorize") {
		t.Fatalf("a user polkit refuses: %d %q", code, msg)
	}
	if h.d.peers.trust.IsTrusted(id) {
		t.Fatal("refused, but trusted anyway")
	}

	nobody := asUser(t, 65534)
	if code, msg := ask(nobody, 65534); code != 200 || !h.d.peers.trust.IsTrusted(id) {
		t.Fatalf("a user polkit allows: %d %q", code, msg)
	}
	h.d.peers.trust.Untrust(id)

	// The client is gone by the time the daemon asks: its PID names
	// nothing, or another process, and polkit refuses.
	r := trustRequestCtx(t, int32(nobody.Process.Pid), 65534, id)
	nobody.Process.Kill()
	nobody.Wait()
	code, msg = serveTrustRequest(h, r)
	if code != 403 || h.d.peers.trust.IsTrusted(id) {
		t.Fatalf("a client that exited: %d %q", code, msg)
	}
	t.Logf("refused a client that exited: %s", msg)
}
