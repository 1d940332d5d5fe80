// Command workstations builds simulated workstations for trying Handoff by
// hand (make workstations / make workstations-down): network namespaces on
// a bridge, as the tests use.
//
//	workstations up [PREFIX] [NAME…]   (default: hows a b)
//	workstations down [PREFIX] [NAME…]
package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/handoff/handoff/internal/testnet"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: workstations up|down [PREFIX] [NAME…]")
		os.Exit(2)
	}
	prefix, names := "hows", []string{"a", "b"}
	if len(os.Args) > 2 {
		prefix = os.Args[2]
	}
	if len(os.Args) > 3 {
		names = os.Args[3:]
	}
	if os.Args[1] == "down" {
		for _, n := range names {
			exec.Command("ip", "netns", "del", prefix+"-"+n).Run()
		}
		exec.Command("ip", "netns", "del", prefix+"-br").Run()
		return
	}
	n, err := testnet.Build(prefix, names...)
	if err != nil {
		if n != nil {
			n.Teardown()
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, h := range n.Hosts() {
		fmt.Printf("%s: namespace %s, address %s\n  sudo nsenter --net=/run/netns/%s -- bin/handoff --socket /run/handoff/%s.sock daemon --state-dir /var/lib/handoff-%s --name ws-%s\n",
			h.Name, h.NS, h.Addr, h.NS, h.Name, h.Name, h.Name)
	}
	fmt.Printf("remove them with: make workstations-down\n")
}
