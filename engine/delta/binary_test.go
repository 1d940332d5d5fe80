package delta

import (
	"reflect"
	"strings"
	"testing"
)

func TestIndexBinaryRoundTrip(t *testing.T) {
	ix := &Index{Files: []File{
		{Name: "pages-1.img", Size: 3 * PageSize, Mode: 0o600, Pieces: Hashes{sum([]byte("a")), sum([]byte("b")), sum([]byte("c"))}},
		{Name: "core-1.img", Size: 10, Mode: 0o644, Pieces: Hashes{sum([]byte("d"))}},
		{Name: "empty.img", Size: 0, Mode: 0o600, Pieces: Hashes{}},
	}}
	data, err := ix.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Index
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ix, &back) {
		t.Fatalf("round trip changed the index:\n%+v\n%+v", ix, &back)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestIndexBinaryRefusesDamage(t *testing.T) {
	ix := &Index{Files: []File{{Name: "pages-1.img", Size: 2 * PageSize, Pieces: Hashes{sum([]byte("a")), sum([]byte("b"))}}}}
	good, _ := ix.MarshalBinary()
	for name, data := range map[string][]byte{
		"empty":       nil,
		"wrong magic": append([]byte("JSON"), good[4:]...),
		"truncated":   good[:len(good)-5],
		"trailing":    append(append([]byte{}, good...), 0),
		"huge count":  append([]byte("HIX1"), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"name beyond": append([]byte("HIX1"), 1, 0x7f, 'x'),
	} {
		var back Index
		err := back.UnmarshalBinary(data)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "index: ") {
			t.Errorf("%s: error %q does not say it is about the index", name, err)
		}
	}
}
