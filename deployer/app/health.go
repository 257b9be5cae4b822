package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"time"
)

// ErrUnhealthy is returned by WaitHealthy when the deadline passes.
var ErrUnhealthy = errors.New("not healthy")

// ErrExited is returned by WaitHealthy when the app exits during the check.
var ErrExited = errors.New("app exited")

// healthClient opens a fresh connection for every try (a check should
// prove the app still accepts them), never uses a proxy from the
// environment, and does not follow redirects: a 3xx is not healthy.
var healthClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// WaitHealthy GETs url until it answers 2xx, waiting interval between
// tries, each try limited to tryTimeout, for at most deadline. It
// returns nil on the first 2xx; an error wrapping ErrUnhealthy with the
// last try's failure when the deadline passes; one wrapping ErrExited as
// soon as exited (a Process's Done, may be nil) is closed, also when the
// port answered (then something else holds it); ctx's error if ctx ends.
func WaitHealthy(ctx context.Context, url string, interval, tryTimeout, deadline time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeoutCause(ctx, deadline, ErrUnhealthy)
	defer cancel()
	if exited != nil {
		var stop context.CancelCauseFunc
		ctx, stop = context.WithCancelCause(ctx)
		defer stop(nil)
		go func() {
			select {
			case <-exited:
				stop(ErrExited)
			case <-ctx.Done():
			}
		}()
	}
	var last error
	for try := 1; ; try++ {
		err := getOK(ctx, url, tryTimeout)
		if err == nil {
			if !isClosed(exited) {
				return nil
			}
			return fmt.Errorf("health check %s: %w; something else answers on its port", url, ErrExited)
		}
		if last == nil || ctx.Err() == nil {
			last = err // a try cut short by the end of the wait says less
		}
		if ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(interval):
				continue
			}
		}
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, ErrExited):
			return fmt.Errorf("health check %s: %w after %d tries (last: %v)", url, ErrExited, try, last)
		case errors.Is(cause, ErrUnhealthy):
			return fmt.Errorf("health check %s: %w after %s (%d tries): %v", url, ErrUnhealthy, deadline, try, last)
		default:
			return fmt.Errorf("health check %s: %w", url, cause)
		}
	}
}

// isClosed reports whether ch is closed; never for nil.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// getOK is one try: nil for a 2xx answer.
func getOK(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "eeveon-health-check")
	resp, err := healthClient.Do(req)
	if err != nil {
		if ue, ok := err.(*neturl.Error); ok {
			err = ue.Err // drop the repeated "Get URL:"
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errors.New(resp.Status)
	}
	return nil
}
