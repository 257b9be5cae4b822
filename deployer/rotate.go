package deployer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// RotatingFile is an append-only log file that starts a new segment when
// it would grow past Max bytes: the full one is renamed to
// NAME.YYYYMMDDTHHMMSSZ next to it (vacuum removes old segments).
type RotatingFile struct {
	Path string
	Max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Write appends p, rotating first when needed.
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.Max > 0 && r.size > 0 && r.size+int64(len(p)) > r.Max {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

func (r *RotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	if err := os.Rename(r.Path, SegmentName(r.Path, time.Now())); err != nil {
		return fmt.Errorf("rotate %s: %w", r.Path, err)
	}
	return r.open()
}

// Close closes the current segment.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// SegmentName is the name a log segment gets when it is rotated out.
func SegmentName(path string, t time.Time) string {
	return path + "." + t.UTC().Format("20060102T150405.000000000Z")
}

// Segments lists the rotated-out segments of the log at path.
func Segments(path string) []string {
	matches, _ := filepath.Glob(path + ".*")
	var out []string
	for _, m := range matches {
		if suffix := strings.TrimPrefix(m, path+"."); len(suffix) >= 16 && suffix[8] == 'T' {
			out = append(out, m)
		}
	}
	return out
}
