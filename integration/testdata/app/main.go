// Command app is the app of the integration tests' app sites: GET /
// answers with the content of ./VERSION (read at start), GET /up answers
// 200. It listens on 127.0.0.1:$PORT and stops gracefully on SIGTERM.
// A file ./UNHEALTHY makes /up answer 503; a file ./CRASH makes it exit
// at once with status 3.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if _, err := os.Stat("CRASH"); err == nil {
		fmt.Println("CRASH is there: exiting")
		os.Exit(3)
	}
	b, err := os.ReadFile("VERSION")
	if err != nil {
		fmt.Println("no VERSION:", err)
		os.Exit(1)
	}
	version := strings.TrimSpace(string(b))
	_, unhealthy := os.Stat("UNHEALTHY")
	sick := unhealthy == nil
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("GET /up", func(w http.ResponseWriter, r *http.Request) {
		if sick {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		fmt.Println("SIGTERM: shutting down")
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	}()
	fmt.Printf("version %s listening on %s\n", version, srv.Addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("stopped")
}
