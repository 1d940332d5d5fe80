package delta

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestPlacesJSON(t *testing.T) {
	for _, ps := range []Places{nil, {0}, {0, 1, 2}, {5, 300, 301, 1 << 22}} {
		data, err := json.Marshal(ps)
		if err != nil {
			t.Fatal(err)
		}
		var back Places
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("%v: %v", ps, err)
		}
		if len(ps) == 0 && len(back) == 0 {
			continue
		}
		if !reflect.DeepEqual(back, ps) {
			t.Errorf("%v came back as %v", ps, back)
		}
	}
	if _, err := json.Marshal(Places{3, 3}); err == nil {
		t.Error("places that do not increase were written")
	}
	for _, bad := range []string{`"AA=="`, `"gA=="`, `[1,2]`, `"%%"`} { // gap 0; a cut varint; not base64
		var ps Places
		if err := json.Unmarshal([]byte(bad), &ps); err == nil {
			t.Errorf("%s was read as %v", bad, ps)
		}
	}
}

func TestResolvePlaces(t *testing.T) {
	h := func(s string) Hash { return sum([]byte(s)) }
	ix := &Index{Files: []File{
		{Name: "pages-1.img", Size: 2 * PageSize, Pieces: Hashes{h("a"), h("b")}},
		{Name: "empty.img", Pieces: Hashes{}},
		{Name: "core-1.img", Size: MaxChunkSize + 10, Pieces: Hashes{h("c"), h("d")}},
	}}
	got, err := ix.resolve(Places{1, 3})
	want := []placed{
		{h: h("b"), file: "pages-1.img", off: PageSize, size: PageSize},
		{h: h("d"), file: "core-1.img", off: MaxChunkSize, size: 10},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("resolve: %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []Places{{4}, {2, 1}, {1, 1}} {
		if _, err := ix.resolve(bad); err == nil {
			t.Errorf("resolved %v", bad)
		}
	}
}

// TestPiecesOnlyInTheirOrder: the receiver takes exactly the pieces it
// asked for, in the order asked, and nothing else.
func TestPiecesOnlyInTheirOrder(t *testing.T) {
	src := writeDir(t, map[string][]byte{"pages-1.img": randomPages(t, 3)})
	ix, _ := IndexDir(src)
	stream := func(want Places) []byte {
		var b bytes.Buffer
		if _, err := WritePieces(&b, src, ix, want); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for name, data := range map[string][]byte{
		"swapped":   append(stream(Places{1}), stream(Places{0})...),
		"not asked": append(stream(Places{0}), stream(Places{2})...),
	} {
		if err := NewPool().ReadPieces(bytes.NewReader(data), t.TempDir(), ix, Places{0, 1}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
}
