#!/usr/bin/env bash
# The README's first command: the seed's example end to end, offline (no Docker Hub).
#  1. scripts/setup.sh installs what mbuild needs and builds it
#  2. examples/bases/build.sh makes the base images it lacks (alpine, golang and what they need)
#  3. mbuild builds examples/myhttpserver (a multi-stage Dockerfile: Go build stage, slim final image)
#  4. mbuild run --rm -p 8080:1111 myhttpserver, in the background
#  5. curl fetches a page from it; we print the page and the image's size; then we stop it
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MBUILD_ROOT=${MBUILD_ROOT:-/var/lib/mbuild}
port=${DEMO_PORT:-8080}
mb() { node bin/mbuild.js "$@"; }

bash examples/bases/build.sh alpine golang

t0=$(date +%s)
mb build -t myhttpserver examples/myhttpserver
echo "demo: built myhttpserver in $(($(date +%s) - t0))s"

log=$(mktemp)
mb run --rm -p "$port:1111" myhttpserver >"$log" 2>&1 &
pid=$!
stop() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT

page=
for _ in $(seq 50); do
  page=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null) && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
echo "demo: the container printed:"
sed 's/^/  | /' "$log"
if [ -z "$page" ]; then
  echo "demo: no answer from 127.0.0.1:$port" >&2
  exit 1
fi
echo "demo: curl http://127.0.0.1:$port/ answered: $page"
# the size a registry would store: the compressed layers (the build stage's golang image stays behind)
for name in golang myhttpserver; do
  mb inspect "$name" | python3 -c '
import json, sys
img = json.load(sys.stdin)[0]
print("demo: image %-13s %d layers, %.1f MB compressed" % (img["RepoTags"][0], len(img["Manifest"]["layers"]), img["Size"] / 1e6))
'
done
