package transport

import (
	"strings"
	"time"
)

// Preset is a named link from the literature.
type Preset struct {
	Name string
	Link Link
	// Source says where the rates and the round-trip time come from.
	Source string
}

// Presets returns the link presets, slowest first. The uplink and downlink
// rates of 3g, 4g and wifi are the measured averages Neurosurgeon (Kang et
// al., ASPLOS 2017) uses; cat1's uplink is DADS's (Hu et al., INFOCOM
// 2019). The round-trip times and cat1's downlink are our assumptions,
// typical values for each access network to a nearby server; README.md
// gives the reasoning.
func Presets() []Preset {
	return []Preset{
		{"cat1", Link{Up: 0.13e6, Down: 1e6, RTT: 150 * time.Millisecond},
			"LTE Cat-1 IoT uplink 0.13 Mbit/s (DADS); downlink 1 Mbit/s and RTT 150 ms assumed"},
		{"3g", Link{Up: 1.1e6, Down: 2.03e6, RTT: 100 * time.Millisecond},
			"3G 1.1/2.03 Mbit/s (Neurosurgeon); RTT 100 ms assumed (HSPA)"},
		{"4g", Link{Up: 5.85e6, Down: 13.76e6, RTT: 40 * time.Millisecond},
			"LTE 5.85/13.76 Mbit/s (Neurosurgeon); RTT 40 ms assumed"},
		{"wifi", Link{Up: 18.88e6, Down: 54.97e6, RTT: 10 * time.Millisecond},
			"Wi-Fi 18.88/54.97 Mbit/s (Neurosurgeon); RTT 10 ms assumed (one hop to an edge server)"},
		{"gigabit", Link{Up: 1e9, Down: 1e9, RTT: time.Millisecond},
			"wired gigabit Ethernet 1000/1000 Mbit/s; RTT 1 ms assumed"},
	}
}

// LookupPreset returns the preset named name, ignoring case, or false.
func LookupPreset(name string) (Preset, bool) {
	for _, p := range Presets() {
		if strings.EqualFold(name, p.Name) {
			return p, true
		}
	}
	return Preset{}, false
}
