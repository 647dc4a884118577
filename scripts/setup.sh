#!/usr/bin/env bash
# Install what mbuild needs on a fresh Debian 12 machine (as root), then npm packages and the build.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
[ -e /usr/include/seccomp.h ] || need+=(libseccomp-dev)   # the RUN sandbox's seccomp filter (native/seccomp.c)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need+=(nftables)   # the bridge's anti-spoofing rules
command -v unshare >/dev/null || need+=(util-linux)
command -v mount >/dev/null || need+=(mount)
command -v python3 >/dev/null || need+=(python3)
command -v xz >/dev/null || need+=(xz-utils)
command -v bzip2 >/dev/null || need+=(bzip2)
command -v zstd >/dev/null || need+=(zstd)   # zstd layers: read (ADD, pulls) and written (-o compression=zstd)
command -v git >/dev/null || need+=(git)     # git URL build contexts
command -v script >/dev/null || need+=(bsdutils)   # the save-to-a-terminal test
command -v ip >/dev/null || need+=(iproute2)
[ -x /usr/sbin/iptables ] || command -v iptables >/dev/null || need+=(iptables)   # NAT for RUN's bridge network
command -v curl >/dev/null || need+=(curl ca-certificates)   # scripts/demo.sh fetches a page
# registry tests: a real registry (distribution 2.8), an independent client, htpasswd, certificates
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
# multi-platform builds: RUN steps of a foreign platform run under qemu-user (F-flag binfmt handlers);
# the multiarch tests make an arm64 busybox from Debian's busybox-static:arm64 (test/helpers/multiarch.ts)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static binfmt-support)
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
# rootless mbuild (cli/rootless.ts, test/integration/rootless.test.ts): newuidmap/newgidmap map a
# user's /etc/subuid range into its user namespace; slirp4netns gives its RUN steps a network
command -v newuidmap >/dev/null || [ -x /usr/bin/newuidmap ] || need+=(uidmap)
command -v slirp4netns >/dev/null || need+=(slirp4netns)
command -v runuser >/dev/null || need+=(util-linux)   # the rootless tests run the CLI as a test user
# RUN steps and `mbuild run` of arm64 (any foreign) images: qemu-user under binfmt_misc, which mbuild
# registers itself from the package's /usr/lib/binfmt.d rules (builder/sandbox/emulation.ts)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
for extra in "$@"; do dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# slirp4netns opens /dev/net/tun as the user: Debian's udev makes it 0666, a machine without udev may not
[ -c /dev/net/tun ] && chmod 0666 /dev/net/tun

if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ]; then
  # npm install (not ci): npm 11 writes lock files whose optional platform packages `npm ci` rejects
  npm install --no-audit --no-fund
else
  npm run --silent build
fi
