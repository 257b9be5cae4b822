package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestWaitHealthy(t *testing.T) {
	t.Run("slow start", func(t *testing.T) {
		port := freePort(t)
		start := time.Now()
		p, err := Start(appSpec(port, nil, "VERSION=A", "SLOW_START=0.5"))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop(context.Background(), time.Second)
		url := fmt.Sprintf("http://127.0.0.1:%d/up", port)
		if err := WaitHealthy(context.Background(), url, 50*time.Millisecond, time.Second, 30*time.Second, p.Done()); err != nil {
			t.Fatalf("WaitHealthy: %v", err)
		}
		if took := time.Since(start); took < 500*time.Millisecond {
			t.Fatalf("healthy after %s, before the app's slow start ended", took)
		}
	})
	t.Run("never healthy", func(t *testing.T) {
		port := freePort(t)
		p, err := Start(appSpec(port, nil, "VERSION=A", "SLOW_START=100"))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop(context.Background(), time.Second)
		url := fmt.Sprintf("http://127.0.0.1:%d/up", port)
		start := time.Now()
		err = WaitHealthy(context.Background(), url, 50*time.Millisecond, time.Second, 400*time.Millisecond, p.Done())
		took := time.Since(start)
		if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "503 Service Unavailable") {
			t.Fatalf("WaitHealthy: %v, want ErrUnhealthy with the last status", err)
		}
		if took < 400*time.Millisecond || took > 2*time.Second {
			t.Fatalf("gave up after %s, want the 400ms deadline", took)
		}
	})
	t.Run("nothing listens", func(t *testing.T) {
		url := fmt.Sprintf("http://127.0.0.1:%d/up", freePort(t))
		err := WaitHealthy(context.Background(), url, 50*time.Millisecond, time.Second, 200*time.Millisecond, nil)
		if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("WaitHealthy: %v, want ErrUnhealthy: connection refused", err)
		}
	})
	t.Run("app exits", func(t *testing.T) {
		p, err := Start(Spec{Command: "sleep 0.2; exit 1", Dir: t.TempDir(), Env: []string{"PATH=/usr/bin:/bin"}})
		if err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/up", freePort(t))
		start := time.Now()
		err = WaitHealthy(context.Background(), url, 50*time.Millisecond, time.Second, 10*time.Second, p.Done())
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("WaitHealthy: %v, want ErrExited with the last try's error", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("noticed the exit after %s", took)
		}
	})
	t.Run("a stray process holds the port", func(t *testing.T) {
		_, stray, _ := startApp(t, "stray")
		p, err := Start(Spec{Command: "exit 1", Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		err = WaitHealthy(context.Background(), stray.URL()+"/up", 50*time.Millisecond, time.Second, 2*time.Second, p.Done())
		if !errors.Is(err, ErrExited) {
			t.Fatalf("WaitHealthy: %v, want ErrExited although the port answers", err)
		}
	})
	t.Run("a redirect is not healthy", func(t *testing.T) {
		_, b, _ := startApp(t, "A")
		for path, status := range map[string]string{"/moved": "302 Found", "/nope": "404 Not Found"} {
			err := WaitHealthy(context.Background(), b.URL()+path, 20*time.Millisecond, time.Second, 100*time.Millisecond, nil)
			if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), status) {
				t.Fatalf("%s: %v, want %s", path, err, status)
			}
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		url := fmt.Sprintf("http://127.0.0.1:%d/up", freePort(t))
		if err := WaitHealthy(ctx, url, 50*time.Millisecond, time.Second, 10*time.Second, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitHealthy: %v, want context.Canceled", err)
		}
	})
}
