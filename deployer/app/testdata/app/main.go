// Command app is the test app of package app. With no argument it serves
// HTTP on 127.0.0.1:$PORT:
//
//	GET /         $VERSION
//	GET /up       200, or 503 for the first $SLOW_START seconds
//	GET /slow?ms= $VERSION after a pause
//	GET /headers  the Host and X-Forwarded-* headers it got
//	GET /moved    a redirect to /up
//	GET /count    how many requests it served (this one not counted)
//	GET /ws       Upgrade: echo; then echoes every byte back
//
// and shuts down on SIGTERM. "app spawn CMD GRACE" starts CMD with
// app.Start, prints "pgid N", and waits to be killed: a stand-in for the
// server, for the crash test.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eeveon/eeveon/deployer/app"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "spawn" {
		spawn(os.Args[2], os.Args[3])
		return
	}
	serve()
}

func spawn(command, grace string) {
	g, err := time.ParseDuration(grace)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p, err := app.Start(app.Spec{Command: command, Dir: ".", Env: os.Environ(), OrphanGrace: g})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("pgid %d\n", p.Pgid())
	<-p.Done()
	os.Exit(3)
}

func serve() {
	version := os.Getenv("VERSION")
	start := time.Now()
	var slow time.Duration
	if s := os.Getenv("SLOW_START"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "SLOW_START:", err)
			os.Exit(2)
		}
		slow = time.Duration(f * float64(time.Second))
	}
	var count atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("GET /up", func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		if time.Since(start) < slow {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("GET /headers", func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		fmt.Fprintf(w, "host=%s xff=%s xfp=%s xfh=%s\n", r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	})
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		http.Redirect(w, r, "/up", http.StatusFound)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, count.Load())
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Version: %s\r\n\r\n", version)
		rw.Flush()
		echo(rw)
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		<-ch
		fmt.Println("stopping on SIGTERM")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	fmt.Printf("listening on %s, version %s\n", srv.Addr, version)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	<-stopped // in-flight requests finish first
}

func echo(rw *bufio.ReadWriter) {
	buf := make([]byte, 4096)
	for {
		n, err := rw.Read(buf)
		if n > 0 {
			rw.Write(buf[:n])
			if rw.Flush() != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				fmt.Fprintln(os.Stderr, "ws:", err)
			}
			return
		}
	}
}
