package builds

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/crun-ci/crun-ci/hostfs"
)

// Kept says what of a build was kept on purpose (--keep-on-failure, --no-remove), for
// `crun-ci debug`: the clean-up that every crun-ci does on start leaves such a build
// alone until Until (for ever when zero), unless it is Removable; `crun-ci cleanup
// --kept` removes it at once. It is the file kept.json in the build's directory,
// written by the build's owner as it ends.
type Kept struct {
	Build string `json:"build"`
	// Project is the build directory of the pipeline, Allow the host path grants the
	// build had (--allow-host-path): the roots its host volumes were checked against.
	Project string   `json:"project"`
	Allow   []string `json:"allow,omitempty"`
	// Network is the mode of the build's step networks (bridge, host, none).
	Network string    `json:"network"`
	Created time.Time `json:"created"`
	Until   time.Time `json:"until,omitzero"`
	// Removable says the next clean-up removes the build as any other (--no-remove
	// alone keeps a build only until then, as it always did).
	Removable bool       `json:"removable,omitempty"`
	Steps     []KeptStep `json:"steps"`
}

// KeptStep is a step whose containers were kept.
type KeptStep struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	// Failed says the step failed (rather than being kept by --no-remove).
	Failed bool `json:"failed,omitempty"`
	// Container is the id of the step's own container (the service's, which ran the
	// command); its snapshot has the same key.
	Container string `json:"container"`
	// Image is the image of the step's service, as people write it.
	Image string `json:"image,omitempty"`
}

// Expired reports whether the kept build's time is up at now (or it is Removable): a
// clean-up then removes it.
func (k *Kept) Expired(now time.Time) bool {
	return k.Removable || (!k.Until.IsZero() && now.After(k.Until))
}

// Step returns the kept step named name, the last one when several are (a step run more
// than once, in a matrix), or nil.
func (k *Kept) Step(name string) *KeptStep {
	for i := len(k.Steps) - 1; i >= 0; i-- {
		if k.Steps[i].Name == name {
			return &k.Steps[i]
		}
	}
	return nil
}

func keptPath(dir string) string { return filepath.Join(dir, "kept.json") }

// WriteKept records k in the build's directory dir.
func WriteKept(dir string, k Kept) error {
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	tmp := keptPath(dir) + ".new"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record kept build %s: %w", k.Build, err)
	}
	if err := os.Rename(tmp, keptPath(dir)); err != nil {
		return fmt.Errorf("record kept build %s: %w", k.Build, err)
	}
	return nil
}

// maxKept bounds kept.json: a few steps' names and ids.
const maxKept = 1 << 20

// ReadKept reads the record of the build's directory dir: nil when the build was not
// kept, an error when the record cannot be read (then the build counts as not kept). It
// is read through a handle on dir, as a regular file, non-blocking, with a bound.
func ReadKept(dir string) (*Kept, error) {
	d, err := hostfs.Open(dir, hostfs.Beneath, "the build's directory")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, err := d.ReadFile(filepath.Base(keptPath(dir)), maxKept)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", keptPath(dir), err)
	}
	var k Kept
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("read %s: %w", keptPath(dir), err)
	}
	if k.Build != filepath.Base(dir) {
		return nil, fmt.Errorf("read %s: it names build %q", keptPath(dir), k.Build)
	}
	return &k, nil
}

// ValidID reports whether id can name a build: letters, digits, '_', '.' and '-',
// starting with a letter or digit (so never a path of its own).
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '_' || r == '.' || r == '-'):
		default:
			return false
		}
	}
	return true
}
