//go:build integration

package migration

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cpuinfo"
	"google.golang.org/protobuf/proto"
)

// criuInstructions is the list CRIU's own instruction check compares
// (x86_ins_capability_mask in criu/arch/x86/cpu.c), by CRIU's bit number
// (word*32+bit, compel/arch/x86/.../asm/cpu.h) and the kernel's flag name.
// osxsave is left out: the kernel does not list it.
var criuInstructions = map[int]string{
	0*32 + 0: "fpu", 0*32 + 4: "tsc", 0*32 + 8: "cx8", 0*32 + 11: "sep", 0*32 + 15: "cmov", 0*32 + 19: "clflush",
	0*32 + 23: "mmx", 0*32 + 24: "fxsr", 0*32 + 25: "sse", 0*32 + 26: "sse2",
	1*32 + 11: "syscall", 1*32 + 22: "mmxext", 1*32 + 27: "rdtscp", 1*32 + 30: "3dnowext", 1*32 + 31: "3dnow",
	3*32 + 16: "rep_good", 3*32 + 20: "nopl",
	4*32 + 0: "pni", 4*32 + 1: "pclmulqdq", 4*32 + 3: "monitor", 4*32 + 9: "ssse3", 4*32 + 13: "cx16",
	4*32 + 19: "sse4_1", 4*32 + 20: "sse4_2", 4*32 + 22: "movbe", 4*32 + 23: "popcnt", 4*32 + 25: "aes",
	4*32 + 26: "xsave", 4*32 + 28: "avx", 4*32 + 29: "f16c", 4*32 + 30: "rdrand",
	6*32 + 5: "abm", 6*32 + 6: "sse4a", 6*32 + 7: "misalignsse", 6*32 + 8: "3dnowprefetch", 6*32 + 11: "xop",
	6*32 + 16: "fma4", 6*32 + 21: "tbm",
	9*32 + 0: "fsgsbase", 9*32 + 3: "bmi1", 9*32 + 4: "hle", 9*32 + 5: "avx2", 9*32 + 8: "bmi2", 9*32 + 9: "erms",
	9*32 + 11: "rtm", 9*32 + 14: "mpx", 9*32 + 16: "avx512f", 9*32 + 17: "avx512dq", 9*32 + 18: "rdseed",
	9*32 + 19: "adx", 9*32 + 23: "clflushopt", 9*32 + 26: "avx512pf", 9*32 + 27: "avx512er", 9*32 + 28: "avx512cd",
	9*32 + 29: "sha_ni", 9*32 + 30: "avx512bw", 9*32 + 31: "avx512vl",
	10*32 + 0: "xsaveopt", 10*32 + 1: "xsavec", 10*32 + 2: "xgetbv1",
	11*32 + 1: "avx512vbmi", 11*32 + 6: "avx512_vbmi2", 11*32 + 8: "gfni", 11*32 + 9: "vaes", 11*32 + 10: "vpclmulqdq",
	11*32 + 11: "avx512_vnni", 11*32 + 12: "avx512_bitalg", 11*32 + 13: "tme", 11*32 + 14: "avx512_vpopcntdq",
	11*32 + 22: "rdpid",
	13*32 + 0:  "clzero",
	18*32 + 2:  "avx512_4vnniw", 18*32 + 3: "avx512_4fmaps",
}

// TestCPUFlagsAgreeWithCRIU measures the two ways to learn what the CPU
// offers: `criu cpuinfo dump` (CPUID, read by CRIU's compel) and the
// kernel's /proc/cpuinfo flags that the offer carries. Every instruction
// CRIU's own check compares must be present in one exactly when it is in
// the other, and every one of them (but rep_good, a kernel hint, and tme,
// memory encryption) must count as an instruction set for our check.
func TestCPUFlagsAgreeWithCRIU(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("CRIU's cpuinfo image describes x86 CPUs only")
	}
	criu, err := exec.LookPath("criu")
	if err != nil {
		t.Fatal("criu is missing: run `make deps`")
	}
	dir := t.TempDir()
	start := time.Now()
	if out, err := exec.Command(criu, "cpuinfo", "dump", "-D", dir).CombinedOutput(); err != nil {
		t.Fatalf("criu cpuinfo dump: %v %s", err, out)
	}
	criuTook := time.Since(start)
	data, err := os.ReadFile(filepath.Join(dir, "cpuinfo.img"))
	if err != nil {
		t.Fatal(err)
	}
	// Two magics (the image kind, CPUINFO), the entry's size, the entry.
	if len(data) < 12 || binary.LittleEndian.Uint32(data[4:]) != 0x61404013 {
		t.Fatalf("not a CRIU cpuinfo image: % x", data[:min(len(data), 12)])
	}
	size := binary.LittleEndian.Uint32(data[8:])
	var entry cpuinfo.CpuinfoEntry
	if err := proto.Unmarshal(data[12:12+size], &entry); err != nil {
		t.Fatal(err)
	}
	x86 := entry.GetX86Entry()[0]
	caps := x86.GetCapability()
	has := func(bit int) bool { return bit/32 < len(caps) && caps[bit/32]&(1<<(bit%32)) != 0 }

	start = time.Now()
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := ParseCPUInfo(f)
	f.Close()
	procTook := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}

	agree := 0
	for bit, flag := range criuInstructions {
		if has(bit) != cpu.Has(flag) {
			t.Errorf("%s: CRIU says %v, /proc/cpuinfo %v", flag, has(bit), cpu.Has(flag))
			continue
		}
		agree++
		if _, ok := InstructionFlag("amd64", flag); !ok && flag != "rep_good" && flag != "tme" {
			t.Errorf("%s is in CRIU's instruction check but not in ours", flag)
		}
	}
	t.Logf("%s: %d of CRIU's %d instruction bits agree with /proc/cpuinfo; xfeatures %#x, xsave %d/%d bytes; "+
		"criu cpuinfo dump took %v, reading /proc/cpuinfo %v",
		x86.GetModelId(), agree, len(criuInstructions), x86.GetXfeaturesMask(), x86.GetXsaveSize(), x86.GetXsaveSizeMax(),
		criuTook.Round(time.Millisecond), procTook.Round(10*time.Microsecond))
}
