#!/bin/sh
# Health check of the example app. eeveon does not run the app (start it
# with your own service manager), so this starts the binary the deploy just
# built on a free loopback port, asks /up and / (which must name the commit
# being deployed), and stops it again. A non-zero exit keeps the old colour
# live.
set -eu
log=$(mktemp)
PORT=0 HOST=127.0.0.1 ./bin/app >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

addr=
tries=0
while [ -z "$addr" ]; do
	if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 100 ]; then
		echo "bin/app did not start:" >&2
		cat "$log" >&2
		exit 1
	fi
	sleep 0.05
	tries=$((tries + 1))
	addr=$(sed -n 's/^listening on //p' "$log")
done

./bin/app get "http://$addr/up" >/dev/null
got=$(./bin/app get "http://$addr/" | sed -n 's/^commit //p')
if [ "$got" != "${EEVEON_COMMIT:-unknown}" ]; then
	echo "bin/app at $addr says commit '$got', want '${EEVEON_COMMIT:-unknown}'" >&2
	exit 1
fi
echo "bin/app answers /up and / at ${EEVEON_COMMIT:-unknown}"
