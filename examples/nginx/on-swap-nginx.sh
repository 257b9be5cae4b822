#!/bin/sh
# eeveon on_swap hook for an app site behind nginx: point the site's
# upstream at the colour that just went live, then reload nginx (a graceful
# reload: old workers finish their requests). eeveon sets EEVEON_SITE,
# EEVEON_COLOR, EEVEON_PORT and EEVEON_PATH.
#   EEVEON_NGINX_DIR  where the upstream files live (/etc/nginx/eeveon)
#   NGINX_RELOAD      the reload command (nginx -s reload)
set -eu
: "${EEVEON_PORT:?on_swap for nginx needs an app site (EEVEON_PORT is empty)}"
dir=${EEVEON_NGINX_DIR:-/etc/nginx/eeveon}
name=$(printf %s "$EEVEON_SITE" | tr - _)
conf="$dir/$EEVEON_SITE-upstream.conf"
tmp="$conf.tmp.$$"
mkdir -p "$dir"
printf 'upstream %s_live { server 127.0.0.1:%s; }\n' "$name" "$EEVEON_PORT" >"$tmp"
mv "$tmp" "$conf" # atomic: nginx never reads half a file
${NGINX_RELOAD:-nginx -s reload}
echo "nginx now sends $EEVEON_SITE to $EEVEON_COLOR (port $EEVEON_PORT)"
