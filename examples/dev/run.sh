#!/bin/sh
# `make run`: a development server with its data in ./eeveon-data. On the
# first start (no data dir yet) it registers the example site "hello" and,
# if you have one, your SSH public key as admin, and says how to undo both.
set -eu
EEVEON=${EEVEON:-bin/eeveon}
DATA=${DATA:-./eeveon-data}
LISTEN=${LISTEN:-127.0.0.1:2222}
port=${LISTEN##*:}
host=${LISTEN%:*}

if [ ! -e "$DATA/eeveon.toml" ]; then
	"$EEVEON" init --data "$DATA"
	"$EEVEON" site add hello --data "$DATA" --build ./build.sh --health-cmd ./health.sh
	echo "make run: registered the example site hello (undo: $EEVEON site rm hello --data $DATA)"
	key=
	for k in "$HOME/.ssh/id_ed25519.pub" "$HOME/.ssh/id_ecdsa.pub" "$HOME/.ssh/id_rsa.pub"; do
		if [ -f "$k" ]; then key=$k; break; fi
	done
	if [ -n "$key" ]; then
		"$EEVEON" keys add --data "$DATA" --user "$(id -un)" --role admin "$key"
		echo "make run: added your key $key as admin (undo: $EEVEON keys rm $(id -un) --data $DATA)"
	else
		echo "make run: no SSH key in ~/.ssh; create one and add it as admin with:"
		echo "  ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519 -N '' && $EEVEON keys add --data $DATA --user $(id -un) --role admin ~/.ssh/id_ed25519.pub"
	fi
fi

cat <<NEXT

Next, in another terminal, push the example site:
  cp -r examples/hello /tmp/hello && cd /tmp/hello
  git init -q -b main && git add . && git commit -qm hello
  git remote add eeveon ssh://deploy@$host:$port/hello
  git push eeveon main
Then: ssh -p $port deploy@$host status     (Ctrl-C here stops the server)

NEXT
exec "$EEVEON" serve --data "$DATA" --listen "$LISTEN"
