#!/usr/bin/env bash
# The README's main command: set up, build the example image, and run what it built.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MBUILD_ROOT=${MBUILD_ROOT:-/var/lib/mbuild}
mb() { node bin/mbuild.js "$@"; }

# the base image: the conformance suite's busybox (there is no Docker Hub on this machine)
mb inspect busybox >/dev/null 2>&1 || mb load -i ../shared/conformance/bases/busybox.oci.tar

mb build -t hello examples/hello
mb images

# run it: unpack the image's filesystem and start its ENTRYPOINT in a chroot
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mb build -q --output "type=local,dest=$out/rootfs" examples/hello >/dev/null
entrypoint=$(mb inspect hello | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)[0]["Config"]["Entrypoint"]))')
echo "running $entrypoint:"
chroot "$out/rootfs" $entrypoint
