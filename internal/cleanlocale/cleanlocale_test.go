package cleanlocale

import "testing"

func TestNeedsFix(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{"LANG": "C.UTF-8"}, true},
		{map[string]string{"LANG": "POSIX.UTF-8"}, true},
		{map[string]string{"LC_ALL": "C.utf8", "LANG": "de_DE.UTF-8"}, true},
		{map[string]string{"LC_MESSAGES": "C.UTF-8"}, true},
		{map[string]string{"LANG": "C"}, false},     // go-locale knows plain C
		{map[string]string{"LANG": "POSIX"}, false}, // and POSIX
		{map[string]string{"LANG": "de_DE.UTF-8"}, false},
		{map[string]string{"LC_ALL": "de_DE.UTF-8", "LANG": "C.UTF-8"}, false},
		{map[string]string{"LANG": "C.UTF-8", "LANGUAGE": "fr"}, false},
		{map[string]string{}, false},
	}
	for _, tt := range tests {
		got := NeedsFix(func(k string) string { return tt.env[k] })
		if got != tt.want {
			t.Errorf("NeedsFix(%v) = %v, want %v", tt.env, got, tt.want)
		}
	}
}
