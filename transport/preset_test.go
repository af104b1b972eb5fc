package transport

import "testing"

func TestLookupPreset(t *testing.T) {
	for _, tt := range []struct {
		name, want string
	}{
		{"3g", "3g"},
		{"WiFi", "wifi"},
		{"GIGABIT", "gigabit"},
		{"cat1", "cat1"},
		{"5g", ""},
		{" 4g", ""}, // callers trim
		{"", ""},
	} {
		p, ok := LookupPreset(tt.name)
		if ok != (tt.want != "") || p.Name != tt.want {
			t.Errorf("LookupPreset(%q) = %q, %v; want %q", tt.name, p.Name, ok, tt.want)
		}
	}
	for _, p := range Presets() {
		if got, ok := LookupPreset(p.Name); !ok || got != p {
			t.Errorf("LookupPreset(%s) = %+v, %v; want %+v", p.Name, got, ok, p)
		}
	}
}
