package migration

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/handoff/handoff/engine"
)

const twoCPUs = `processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC
flags		: fpu sse sse2 avx avx2 avx512f hypervisor constant_tsc

processor	: 1
vendor_id	: AuthenticAMD
model name	: AMD EPYC
flags		: fpu sse sse2 avx avx2 hypervisor constant_tsc
`

func TestParseCPUInfo(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		model     string
		features  []string
		wantError bool
	}{
		{"x86, features of every processor", twoCPUs, "AMD EPYC",
			[]string{"avx", "avx2", "constant_tsc", "fpu", "hypervisor", "sse", "sse2"}, false},
		{"arm64", "processor\t: 0\nFeatures\t: fp asimd aes sve\nCPU part\t: 0xd0c\n", "",
			[]string{"aes", "asimd", "fp", "sve"}, false},
		{"no flags at all", "processor\t: 0\nisa\t: rv64imafdc\n", "", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpu, err := ParseCPUInfo(strings.NewReader(tc.in))
			if (err != nil) != tc.wantError {
				t.Fatalf("error %v, want one: %v", err, tc.wantError)
			}
			if cpu.Model != tc.model || !slices.Equal(cpu.Features, tc.features) {
				t.Fatalf("got %q %q, want %q %q", cpu.Model, cpu.Features, tc.model, tc.features)
			}
		})
	}
}

func TestIncompatible(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the cases use x86 flags")
	}
	src := CPU{Model: "AMD EPYC", Features: []string{"avx", "avx2", "avx512bw", "avx512f", "fma", "hypervisor", "sse2"}}
	offer := func(cpu CPU, kernel string) Offer {
		return Offer{From: "ws-a", Spec: engine.Spec{Name: "notes"}, CPU: cpu, Kernel: kernel}
	}
	for _, tc := range []struct {
		name  string
		here  Platform
		offer Offer
		want  []string // in the refusal; nil: accepted
	}{
		{"the same machine", Platform{src, "6.18.0"}, offer(src, "6.18.0"), nil},
		{"a richer CPU and a newer kernel", Platform{CPU{Features: append(slices.Clone(src.Features), "amx_tile")}, "6.19.1"},
			offer(src, "6.18.0"), nil},
		{"bare metal takes a VM's app", Platform{src.Without("hypervisor"), "6.18.0"}, offer(src, "6.18.0"), nil},
		{"no AVX-512", Platform{src.Without("avx512f", "avx512bw"), "6.18.0"}, offer(src, "6.18.0"),
			[]string{"ws-b's CPU lacks AVX-512 (CPU flags avx512bw, avx512f), which notes may use", "ws-a's AMD EPYC"}},
		{"no AVX-512 and no FMA (which CRIU's check misses)", Platform{src.Without("avx512f", "fma"), "6.18.0"}, offer(src, "6.18.0"),
			[]string{"ws-b's CPU lacks AVX-512 and FMA (CPU flags avx512f, fma)"}},
		{"an older kernel", Platform{src, "6.1.0-28-amd64"}, offer(src, "6.18.0"),
			[]string{"ws-b runs Linux 6.1, older than ws-a's 6.18"}},
		{"an older patch release of the same kernel", Platform{src, "6.18.0"}, offer(src, "6.18.3"), nil},
		{"a source that sends no features", Platform{src, "6.18.0"}, offer(CPU{}, "6.18.0"),
			[]string{"ws-a sent no CPU features"}},
		{"neither side reads its features", Platform{CPU{}, "6.18.0"}, offer(CPU{}, "6.18.0"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.here.Incompatible(tc.offer, "ws-b")
			if tc.want == nil {
				if got != "" {
					t.Fatalf("refused: %s", got)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Fatalf("refusal %q lacks %q", got, w)
				}
			}
		})
	}
}

// TestThisCPU: the features come from this machine's real CPU.
func TestThisCPU(t *testing.T) {
	p, err := LocalPlatform()
	if err != nil {
		t.Fatal(err)
	}
	var isa []string
	for _, f := range p.CPU.Features {
		if _, ok := InstructionFlag(runtime.GOARCH, f); ok {
			isa = append(isa, f)
		}
	}
	t.Logf("%s, Linux %s: %d flags, %d of them instruction sets: %s", p.CPU.Model, p.Kernel, len(p.CPU.Features), len(isa), strings.Join(isa, " "))
	if runtime.GOARCH == "amd64" && (!p.CPU.Has("sse2") || !p.CPU.Has("fxsr")) {
		t.Fatalf("an x86-64 CPU without SSE2 or FXSAVE: %v", p.CPU.Features)
	}
	if p.Kernel == "" || len(isa) == 0 {
		t.Fatalf("platform %+v", p)
	}
}

// TestReceiverRefusesBeforeAnything: the refusal comes in answer to the
// offer, in words, with this machine's name.
func TestReceiverRefusesBeforeAnything(t *testing.T) {
	local, err := LocalPlatform()
	if err != nil {
		t.Fatal(err)
	}
	var lacking string
	for _, f := range local.CPU.Features {
		if _, ok := InstructionFlag(runtime.GOARCH, f); ok && lacking != "avx512f" {
			lacking = f // AVX-512 when this CPU has it, else the last one
		}
	}
	poorer := local
	poorer.CPU = local.CPU.Without(lacking)
	rv := &Receiver{Name: "ws-b", WorkDir: t.TempDir(), Platform: &poorer}
	body, _ := json.Marshal(Offer{Version: Version, Spec: engine.Spec{Name: "notes"}, From: "ws-a",
		Arch: runtime.GOARCH, Kernel: local.Kernel, CPU: local.CPU})
	w := httptest.NewRecorder()
	rv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/offer", bytes.NewReader(body)))
	var r Refusal
	json.NewDecoder(w.Body).Decode(&r)
	family, _ := InstructionFlag(runtime.GOARCH, lacking)
	if w.Code != http.StatusConflict || r.Code != RefusedIncompatible ||
		!strings.Contains(r.Error, "ws-b's CPU lacks "+family) || !strings.Contains(r.Error, lacking) {
		t.Fatalf("an offer from a CPU with %s to one without: %d %+v", lacking, w.Code, r)
	}
	if rv.Pending() != 0 {
		t.Fatal("a refused offer left a handoff open")
	}
	t.Logf("refusal: %s", r.Error)
}
