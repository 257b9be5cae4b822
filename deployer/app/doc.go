// Package app holds the building blocks for sites that run a long-lived
// app process in each colour: the reverse proxy that sends traffic to the
// live colour, the process that runs an app in its own process group, the
// supervisor that restarts a crashed app, the HTTP health check, the
// per-site port allocation and the helpers that find or kill the apps of
// a server that died.
//
// A deploy of an app site, in the order the engine uses these pieces:
//
//	a, b, _ := app.PickPorts(stateFile, site, lo, hi)  // the colours' ports
//	p, _ := app.Start(app.Spec{Command: cmd, Dir: dir, Env: env, Out: logw})
//	err := app.WaitHealthy(ctx, url, 1*time.Second, 5*time.Second, 60*time.Second, p.Done())
//	// (unhealthy: p.Stop(ctx, grace) and fail; the live colour keeps serving)
//	sup := app.Supervise(p, spec, logger, app.Policy{})
//	old := proxy.Switch(app.NewBackend("green", b))
//	_ = proxy.Drain(drainCtx, old)                      // in-flight requests finish
//	_ = oldSup.Stop(ctx, grace)                         // TERM, then KILL, whole group
//
// The package does not import the engine and keeps no global state apart
// from a lock that serialises port-state updates within one process.
// Everything here is Linux-only: process groups, the parent-death signal
// and /proc.
package app
