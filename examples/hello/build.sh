#!/bin/sh
# Build of the example site: render public/index.html with the commit that
# is being deployed. eeveon runs this in the new colour's directory.
set -eu
mkdir -p public
sed -e "s/@COMMIT@/${EEVEON_COMMIT:-unknown}/" -e "s/@COLOR@/${EEVEON_COLOR:-unknown}/" index.html.in > public/index.html
echo "rendered public/index.html for ${EEVEON_SITE:-hello} at ${EEVEON_COMMIT:-unknown}"
