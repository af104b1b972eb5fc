package runtime

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
)

// LoadTOML decodes the TOML file at path into v strictly: a syntax error, a
// value of the wrong type or a key v does not know is an error naming the
// file, the line and the key.
func LoadTOML(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	md, err := toml.Decode(string(data), v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if pe.LastKey != "" && !strings.Contains(msg, pe.LastKey) {
				msg = fmt.Sprintf("key %q: %s", pe.LastKey, msg)
			}
			return fmt.Errorf("%s:%d: %s", path, pe.Position.Line, msg)
		}
		// Type errors come as "toml: line N (last key "k"): message".
		if m := typeErr.FindStringSubmatch(err.Error()); m != nil {
			return fmt.Errorf("%s:%s: key %q: %s", path, m[1], m[2], m[3])
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return fmt.Errorf("%s:%d: unknown key %q", path, keyLine(string(data), k), k.String())
	}
	return nil
}

var typeErr = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// keyLine finds the line that sets key: the first assignment of its last
// part after the header of its table. BurntSushi/toml keeps key positions
// private, so this reads the text; 0 means not found.
func keyLine(text string, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	table := strings.Join(key[:len(key)-1], ".")
	name := regexp.QuoteMeta(key[len(key)-1])
	assign := regexp.MustCompile(`^\s*"?` + name + `"?\s*=`)
	header := regexp.MustCompile(`^\s*\[\[?\s*([^\]]*?)\s*\]\]?`)
	inTable := table == ""
	for i, line := range strings.Split(text, "\n") {
		if m := header.FindStringSubmatch(line); m != nil {
			h := strings.ReplaceAll(m[1], `"`, "")
			if h == table {
				inTable = true
				continue
			}
			if inTable && !strings.HasPrefix(table, h) {
				inTable = false
			}
			// The key may itself be a table: [table.name].
			if h == strings.Join(key, ".") {
				return i + 1
			}
			continue
		}
		if inTable && assign.MatchString(line) {
			return i + 1
		}
	}
	return 0
}
