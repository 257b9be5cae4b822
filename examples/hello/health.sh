#!/bin/sh
# Health check of the example site: the page exists and names the commit.
set -eu
grep -q "Commit ${EEVEON_COMMIT}" public/index.html
