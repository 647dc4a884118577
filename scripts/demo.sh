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
mb() { bin/mbuild "$@"; }

bash examples/bases/build.sh alpine golang

t0=$(date +%s)
mb build -t myhttpserver examples/myhttpserver
echo "demo: built myhttpserver in $(($(date +%s) - t0))s"

tmpd=$(mktemp -d)
log=$tmpd/run.log
# node itself in the background (not a shell function), so $! is mbuild and Ctrl-C reaches it
bin/mbuild run --rm -p "$port:1111" myhttpserver >"$log" 2>&1 &
pid=$!
stop_server() { # Ctrl-C, as a user would; harder after 10 s
  if kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
trap 'stop_server; rm -rf "$tmpd"' EXIT

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
stop_server
echo "demo: stopped it"
# the image's size as a registry stores it: the compressed layers of `mbuild save` (the store keeps
# built layers uncompressed; the first save compresses them once). golang, the build stage's image, for scale.
for name in golang myhttpserver; do
  mb save --format oci -o "$tmpd/$name.tar" "$name"
  python3 - "$tmpd/$name.tar" "$name" <<'EOF'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
blob = lambda d: json.load(t.extractfile("blobs/sha256/" + d.split(":")[1]))
m = blob(json.load(t.extractfile("index.json"))["manifests"][0]["digest"])
while "manifests" in m:
    m = blob(m["manifests"][0]["digest"])
print("demo: image %-12s %d layers, %.1f MB compressed" % (sys.argv[2], len(m["layers"]), sum(l["size"] for l in m["layers"]) / 1e6))
EOF
  rm -f "$tmpd/$name.tar"
done
