package migration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Compatibility before freeze. An app picks its code paths for the CPU it
// runs on (glibc's ifuncs, JITs, libraries that probe lazily) and keeps
// them: restored on a CPU that lacks one of those instructions it dies of
// SIGILL, after the source has let it go. CRIU can check this at restore
// (`--cpu-cap`), but only after the freeze, and libcontainer does not ask
// it to. So the offer carries the source's CPU features and kernel, and the
// destination refuses in words before anything is frozen.
//
// The features are the kernel's flags in /proc/cpuinfo: the instructions
// the CPU has and the kernel lets programs use (a feature whose register
// state the kernel does not enable, say AVX-512 under `noxsave`, is not
// listed, and programs that check XCR0 do not use it either). Measured
// against `criu cpuinfo dump` on this machine (TestCPUFlagsAgreeWithCRIU):
// every instruction CRIU's own check compares agrees with the flags.

// Platform is what a machine offers an app: its CPU and its kernel.
type Platform struct {
	CPU    CPU    `json:"cpu"`
	Kernel string `json:"kernel"` // uname -r
}

// CPU is a processor's model (for messages) and its feature flags as the
// kernel lists them in /proc/cpuinfo, sorted.
type CPU struct {
	Model    string   `json:"model,omitempty"`
	Features []string `json:"features"`
}

var localPlatform = sync.OnceValues(func() (Platform, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return Platform{}, fmt.Errorf("read this machine's CPU features: %w", err)
	}
	defer f.Close()
	cpu, err := ParseCPUInfo(f)
	if err != nil {
		return Platform{}, fmt.Errorf("read this machine's CPU features from /proc/cpuinfo: %w", err)
	}
	return Platform{CPU: cpu, Kernel: kernelRelease()}, nil
})

// LocalPlatform is this machine's CPU and kernel, read once: reading
// /proc/cpuinfo asks every CPU its clock, which takes long on big machines.
func LocalPlatform() (Platform, error) {
	p, err := localPlatform()
	p.CPU.Features = slices.Clone(p.CPU.Features)
	return p, err
}

// ParseCPUInfo reads /proc/cpuinfo: the features every processor has (a
// process may run on any of them), from "flags" (x86) or "Features" (arm64).
func ParseCPUInfo(r io.Reader) (CPU, error) {
	var cpu CPU
	var common map[string]bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "model name", "Processor", "uarch":
			if cpu.Model == "" {
				cpu.Model = value
			}
		case "flags", "Features":
			have := map[string]bool{}
			for _, f := range strings.Fields(value) {
				if common == nil || common[f] {
					have[f] = true
				}
			}
			common = have
		}
	}
	if err := sc.Err(); err != nil {
		return cpu, err
	}
	if common == nil {
		return cpu, fmt.Errorf("no feature flags listed")
	}
	for f := range common {
		cpu.Features = append(cpu.Features, f)
	}
	slices.Sort(cpu.Features)
	return cpu, nil
}

// Without returns the CPU as if it lacked the given features.
func (c CPU) Without(features ...string) CPU {
	c.Features = slices.DeleteFunc(slices.Clone(c.Features), func(f string) bool { return slices.Contains(features, f) })
	return c
}

// Has says whether the CPU lists the feature.
func (c CPU) Has(feature string) bool {
	_, ok := slices.BinarySearch(c.Features, feature)
	return ok
}

// Lacks returns the instruction-set features of src this CPU does not have,
// sorted. Only flags that name instructions programs run count (see
// InstructionFlag): the kernel's other flags (a hypervisor, TSC behaviour,
// mitigations) say nothing about what an app may execute, and a source in a
// VM must not be refused by bare metal for its "hypervisor" flag.
func (c CPU) Lacks(src CPU) []string {
	var out []string
	for _, f := range src.Features {
		if _, ok := InstructionFlag(runtime.GOARCH, f); ok && !c.Has(f) {
			out = append(out, f)
		}
	}
	return out
}

// InstructionFlag says whether a /proc/cpuinfo flag of a machine of arch
// names instructions a program may execute, and the name people know them
// by. The x86 list follows the kernel's cpufeatures.h and covers what CRIU's
// own instruction check compares (criu/arch/x86/cpu.c) and what it misses
// (FMA, AVX512-IFMA, AVX-VNNI, BF16, AMX…). On arm64 the kernel lists only
// user-visible hwcaps, so every flag counts; so it does on architectures
// this does not know, which errs towards refusing.
func InstructionFlag(arch, flag string) (family string, ok bool) {
	switch arch {
	case "amd64", "386":
		family, ok := x86Instructions[flag]
		if ok && family == "" {
			family = strings.ToUpper(flag)
		}
		return family, ok
	default:
		return strings.ToUpper(flag), true
	}
}

// x86Instructions maps kernel flag names of user-visible instruction sets to
// the family people name them by ("" = the flag in capitals).
var x86Instructions = map[string]string{
	// CPUID 1 EDX
	"fpu": "x87 FPU", "tsc": "", "cx8": "CMPXCHG8B", "sep": "SYSENTER", "cmov": "", "clflush": "",
	"mmx": "", "fxsr": "FXSAVE", "sse": "", "sse2": "",
	// AMD 0x80000001 EDX, and the kernel's NOPL
	"syscall": "", "mmxext": "MMX extensions", "rdtscp": "", "3dnowext": "3DNow!", "3dnow": "3DNow!",
	"nopl": "NOPL",
	// CPUID 1 ECX
	"pni": "SSE3", "pclmulqdq": "", "monitor": "MONITOR/MWAIT", "ssse3": "", "fma": "", "cx16": "CMPXCHG16B",
	"sse4_1": "SSE4.1", "sse4_2": "SSE4.2", "movbe": "", "popcnt": "", "aes": "AES-NI", "xsave": "XSAVE",
	"avx": "", "f16c": "", "rdrand": "",
	// AMD 0x80000001 ECX
	"lahf_lm": "LAHF/SAHF", "abm": "LZCNT", "sse4a": "SSE4a", "misalignsse": "misaligned SSE",
	"3dnowprefetch": "3DNow!", "xop": "", "fma4": "", "tbm": "",
	// CPUID 7.0 EBX
	"fsgsbase": "", "bmi1": "", "hle": "TSX", "avx2": "", "bmi2": "", "erms": "ERMS", "rtm": "TSX",
	"mpx": "", "avx512f": "AVX-512", "avx512dq": "AVX-512", "rdseed": "", "adx": "",
	"avx512ifma": "AVX-512", "clflushopt": "", "clwb": "", "avx512pf": "AVX-512", "avx512er": "AVX-512",
	"avx512cd": "AVX-512", "sha_ni": "SHA", "avx512bw": "AVX-512", "avx512vl": "AVX-512",
	// CPUID 0xD.1 EAX
	"xsaveopt": "XSAVE", "xsavec": "XSAVE", "xgetbv1": "XSAVE",
	// CPUID 7.1 EAX
	"avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512", "cmpccxadd": "", "amx_fp16": "AMX", "avx_ifma": "AVX-IFMA",
	"sha512": "SHA-512", "sm3": "", "sm4": "", "avx_vnni_int8": "AVX-VNNI", "avx_ne_convert": "AVX-NE-CONVERT",
	// AMD 0x80000008 EBX
	"clzero": "", "rdpru": "",
	// CPUID 7.0 ECX
	"avx512vbmi": "AVX-512", "ospke": "protection keys", "waitpkg": "", "avx512_vbmi2": "AVX-512",
	"gfni": "", "vaes": "", "vpclmulqdq": "", "avx512_vnni": "AVX-512", "avx512_bitalg": "AVX-512",
	"avx512_vpopcntdq": "AVX-512", "rdpid": "", "cldemote": "", "movdiri": "", "movdir64b": "", "enqcmd": "",
	// CPUID 7.0 EDX
	"avx512_4vnniw": "AVX-512", "avx512_4fmaps": "AVX-512", "avx512_vp2intersect": "AVX-512",
	"serialize": "", "tsxldtrk": "TSX", "amx_bf16": "AMX", "avx512_fp16": "AVX-512", "amx_tile": "AMX",
	"amx_int8": "AMX", "user_shstk": "shadow stacks",
}

// describeLack words missing features for a user: their families, then
// the flags ("AVX-512 and AMX (avx512f, amx_tile)").
func describeLack(missing []string) string {
	var families []string
	for _, f := range missing {
		if fam, _ := InstructionFlag(runtime.GOARCH, f); !slices.Contains(families, fam) {
			families = append(families, fam)
		}
	}
	words := families[0]
	if n := len(families); n > 1 {
		words = strings.Join(families[:n-1], ", ") + " and " + families[n-1]
	}
	flags := missing
	if len(flags) > 6 {
		flags = append(slices.Clone(flags[:6]), "…")
	}
	return fmt.Sprintf("%s (CPU flags %s)", words, strings.Join(flags, ", "))
}

// kernelVersion reads the major and minor number of a kernel release
// ("6.18.0-1-amd64" → 6, 18).
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return major, minor, err1 == nil && err2 == nil
}

// Incompatible says, in words, why the app offered in o cannot run on a
// machine with this platform, named name, or returns "" when it can. Only
// instruction sets and the kernel's version count here: what else CRIU
// needs of the kernel it checks at restore.
func (here Platform) Incompatible(o Offer, name string) string {
	switch {
	case len(o.CPU.Features) == 0 && len(here.CPU.Features) == 0:
		// Neither side can read its features (an architecture whose
		// /proc/cpuinfo this does not parse): nothing to compare.
	case len(o.CPU.Features) == 0:
		return fmt.Sprintf("%s sent no CPU features, so %s cannot tell whether its CPU runs %s", o.From, name, o.Spec.Name)
	case len(here.CPU.Features) == 0:
		return fmt.Sprintf("%s cannot read its own CPU features, so it cannot tell whether it runs %s", name, o.Spec.Name)
	default:
		if missing := here.CPU.Lacks(o.CPU); len(missing) > 0 {
			return fmt.Sprintf("%s's CPU lacks %s, which %s may use (it runs on %s's %s)",
				name, describeLack(missing), o.Spec.Name, o.From, orUnknown(o.CPU.Model))
		}
	}
	// A kernel older than the source's may lack what the app found there
	// (a system call, a vDSO function); CRIU would find out only at restore,
	// with the app frozen.
	sMajor, sMinor, ok1 := kernelVersion(o.Kernel)
	hMajor, hMinor, ok2 := kernelVersion(here.Kernel)
	if ok1 && ok2 && (hMajor < sMajor || hMajor == sMajor && hMinor < sMinor) {
		return fmt.Sprintf("%s runs Linux %d.%d, older than %s's %d.%d: %s may use what the older kernel lacks (update %s's kernel)",
			name, hMajor, hMinor, o.From, sMajor, sMinor, o.Spec.Name, name)
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "CPU model unknown"
	}
	return s
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
