#!/bin/sh
# Build of the example app: a binary at bin/app that knows the
# commit it was built from. eeveon runs this in the new colour's directory;
# it needs Go on the server's PATH (and a writable $HOME for Go's cache).
set -eu
go build -ldflags "-X main.commit=${EEVEON_COMMIT:-unknown}" -o bin/app .
echo "built bin/app at ${EEVEON_COMMIT:-unknown}"
