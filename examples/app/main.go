// Command app is eeveon's example HTTP app. GET / answers with the commit
// it was built from; GET /up answers 200 while the app can serve, for
// health checks and load balancers.
//
// It listens on $HOST:$PORT (default 127.0.0.1:8080; PORT=0 picks a free
// port) and prints "listening on ADDR" once it accepts connections.
// SIGTERM or SIGINT stops it gracefully.
//
// "app get URL" fetches URL and prints the body; it exits 0 only on a 200,
// so health checks need no curl on the server.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// commit is set at build time: go build -ldflags "-X main.commit=$EEVEON_COMMIT".
var commit = "unknown"

func main() {
	switch {
	case len(os.Args) == 3 && os.Args[1] == "get":
		os.Exit(get(os.Args[2]))
	case len(os.Args) != 1:
		fmt.Fprintln(os.Stderr, "usage: app | app get URL")
		os.Exit(2)
	}
	if err := serve(); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "eeveon example app\ncommit %s\n", commit)
	})
	mux.HandleFunc("GET /up", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func serve() error {
	addr := net.JoinHostPort(env("HOST", "127.0.0.1"), env("PORT", "8080"))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func get(url string) int {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "app get:", err)
		return 1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, "app get:", err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "app get %s: %s\n", url, resp.Status)
		return 1
	}
	return 0
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
