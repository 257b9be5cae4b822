package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// ErrNoPorts is returned by PickPorts when the range has fewer than two
// free ports that no other site holds.
var ErrNoPorts = errors.New("not enough free ports")

// portState is the JSON in the ports state file.
type portState struct {
	Sites map[string][2]int `json:"sites"`
}

var portsMu sync.Mutex // one writer of the state file per process

// PickPorts gives site its two app ports, one per colour, from lo..hi.
// A site keeps the ports recorded for it in the JSON file at stateFile
// as long as both lie in the range; they are not checked for being free,
// since the site's own live app holds one of them (check the port a new
// colour is about to use with PortFree). Otherwise the two lowest ports
// in the range that no other site holds and that can be bound on
// 127.0.0.1 right now are chosen and recorded (written atomically).
// Ports given by the user (--ports A,B) do not go through here.
//
// reserved are ports other sites use outside this file (fixed --ports,
// proxy addresses): a new pick avoids them too.
func PickPorts(stateFile, site string, lo, hi int, reserved ...int) (a, b int, err error) {
	if lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("pick ports for %s: bad range %d-%d", site, lo, hi)
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	st, err := loadPorts(stateFile)
	if err != nil {
		return 0, 0, err
	}
	inRange := func(p int) bool { return p >= lo && p <= hi }
	if p, ok := st.Sites[site]; ok && p[0] != p[1] && inRange(p[0]) && inRange(p[1]) {
		return p[0], p[1], nil
	}
	taken := map[int]bool{}
	for _, p := range reserved {
		taken[p] = true
	}
	for name, p := range st.Sites {
		if name != site {
			taken[p[0]], taken[p[1]] = true, true
		}
	}
	var got []int
	for port := lo; port <= hi && len(got) < 2; port++ {
		if !taken[port] && PortFree(port) {
			got = append(got, port)
		}
	}
	if len(got) < 2 {
		return 0, 0, fmt.Errorf("pick ports for %s: %w in %d-%d", site, ErrNoPorts, lo, hi)
	}
	st.Sites[site] = [2]int{got[0], got[1]}
	if err := savePorts(stateFile, st); err != nil {
		return 0, 0, err
	}
	return got[0], got[1], nil
}

// ReleasePorts forgets the ports of site, e.g. when the site is removed.
func ReleasePorts(stateFile, site string) error {
	portsMu.Lock()
	defer portsMu.Unlock()
	st, err := loadPorts(stateFile)
	if err != nil {
		return err
	}
	if _, ok := st.Sites[site]; !ok {
		return nil
	}
	delete(st.Sites, site)
	return savePorts(stateFile, st)
}

// PortFree reports whether 127.0.0.1:port can be bound now. (A listener
// on 0.0.0.0 or [::] holding the port makes it not free too.)
func PortFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func loadPorts(path string) (portState, error) {
	st := portState{Sites: map[string][2]int{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read port state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read port state %s: %w", path, err)
	}
	if st.Sites == nil {
		st.Sites = map[string][2]int{}
	}
	return st, nil
}

// savePorts writes the state through a temp file in the same directory:
// write, fsync, rename, fsync the directory.
func savePorts(path string, st portState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write port state: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write port state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("write port state %s: %w", path, err)
	}
	return nil
}
