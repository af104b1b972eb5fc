package runtime

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Devices is config/devices.toml: the servers an edge may use, by name.
type Devices struct {
	// Default names the server used when none is given.
	Default string                  `toml:"default"`
	Servers map[string]DeviceServer `toml:"servers"`
}

// DeviceServer is one server: addresses tried in order, the SSH user, the
// edge's private key and the known_hosts file that pins the server's host
// key. Paths are relative to the devices file.
type DeviceServer struct {
	Addresses  []string `toml:"addresses"`
	User       string   `toml:"user"`
	Identity   string   `toml:"identity"`
	KnownHosts string   `toml:"known_hosts"`
}

// LoadDevices reads and checks a devices file.
func LoadDevices(path string) (*Devices, error) {
	var d Devices
	if err := LoadTOML(path, &d); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	for name, s := range d.Servers {
		if len(s.Addresses) == 0 {
			return nil, fmt.Errorf("%s: [servers.%s] has no addresses", path, name)
		}
		if s.Identity == "" || s.KnownHosts == "" {
			return nil, fmt.Errorf("%s: [servers.%s] needs identity and known_hosts (tracr keys init creates both)", path, name)
		}
		s.Identity = absFrom(dir, s.Identity)
		s.KnownHosts = absFrom(dir, s.KnownHosts)
		d.Servers[name] = s
	}
	if d.Default != "" {
		if _, ok := d.Servers[d.Default]; !ok {
			return nil, fmt.Errorf("%s: default server %q is not among [servers.*] (%s)", path, d.Default, strings.Join(d.names(), ", "))
		}
	}
	return &d, nil
}

func absFrom(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func (d *Devices) names() []string {
	var out []string
	for n := range d.Servers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the named server, or the default for "".
func (d *Devices) Lookup(name string) (DeviceServer, error) {
	if name == "" {
		name = d.Default
	}
	if name == "" {
		return DeviceServer{}, fmt.Errorf("no server named and no default in the devices file; use --server local for the embedded loopback server")
	}
	s, ok := d.Servers[name]
	if !ok {
		return DeviceServer{}, fmt.Errorf("unknown server %q (known: %s; or --server local)", name, strings.Join(d.names(), ", "))
	}
	return s, nil
}
