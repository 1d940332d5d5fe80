package migration

import (
	"errors"
	"slices"
	"testing"

	"github.com/handoff/handoff/engine/handles"
)

func TestFilesToShip(t *testing.T) {
	lib := handles.Requirement{Path: "/usr/lib/libx.so", Kind: handles.KindMapped, Size: 10, Hash: "aa"}
	dict := handles.Requirement{Path: "/srv/dict.txt", Kind: handles.KindRegular, Size: 5, Hash: "bb"}
	required := []handles.Requirement{dict, lib}
	tests := []struct {
		name    string
		asked   []handles.Requirement
		want    []string
		refused bool
	}{
		{"nothing", nil, nil, false},
		{"listed files", []handles.Requirement{lib, dict}, []string{lib.Path, dict.Path}, false},
		{"asked twice, sent once", []handles.Requirement{lib, lib}, []string{lib.Path}, false},
		{"a host secret", []handles.Requirement{lib, {Path: "/etc/shadow", Kind: handles.KindRegular}}, nil, true},
		{"listed path, other content", []handles.Requirement{{Path: lib.Path, Kind: lib.Kind, Hash: "ff"}}, nil, true},
		{"listed path, other kind", []handles.Requirement{{Path: lib.Path, Kind: handles.KindDir, Hash: lib.Hash}}, nil, true},
		{"climbing out of a listed path", []handles.Requirement{{Path: lib.Path + "/../../../etc/shadow", Kind: lib.Kind, Hash: lib.Hash}}, nil, true},
		{"a relative path", []handles.Requirement{{Path: "usr/lib/libx.so", Kind: lib.Kind, Hash: lib.Hash}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := filesToShip(required, tt.asked)
			if tt.refused {
				if !errors.Is(err, ErrUnlistedFile) || got != nil {
					t.Fatalf("got %v, %v; want a refusal", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
