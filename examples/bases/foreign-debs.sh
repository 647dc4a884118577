#!/usr/bin/env bash
# Downloads Debian packages of another architecture (e.g. arm64) from the machine's Debian mirrors,
# without changing the machine's apt setup: apt runs with a private state (package lists of that
# architecture only) under $MBUILD_BASES_CACHE/apt-ARCH, so no `dpkg --add-architecture` is needed
# and the host's `apt-get update` stays as it was.
#
# Usage: examples/bases/foreign-debs.sh ARCH DIR PKG...   (Debian's names: arm64, armhf, riscv64, ...)
# The .deb files land in DIR (kept there: a second call finds them). The lists are refreshed when
# older than a day. Prints nothing on success but the .deb paths, one a line.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 ARCH DIR PKG..." >&2; exit 2; }
arch=$1 out=$2
shift 2
cache=${MBUILD_BASES_CACHE:-/var/cache/mbuild-bases}
state="$cache/apt-$arch"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$out"
[ -e "$state/status" ] || : >"$state/status"
opts=(-o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o "Dir::State::Lists=$state/lists"
  -o "Dir::Cache=$state/cache" -o "Dir::State::status=$state/status" -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root")
# one apt at a time on this private state (two builds or tests may ask at once)
exec 9>"$state/lock"
flock 9
# (a stamp of our own: apt gives the list files the mirror's times)
if [ -z "$(find "$state/updated" -mmin -1440 2>/dev/null)" ]; then
  apt-get "${opts[@]}" update -qq >"$state/update.log" 2>&1 || { tail -n 5 "$state/update.log" >&2; exit 1; }
  : >"$state/updated"
fi
cd "$out"
for p in "$@"; do
  # apt-get download names the file NAME_VERSION_ARCH.deb (the epoch's ':' as %3a)
  ver=$(apt-cache "${opts[@]}" policy "$p" | awk '/Candidate:/ { print $2; exit }')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || { echo "foreign-debs: no $p for $arch in the mirror's lists" >&2; exit 1; }
  f="${p}_${ver/:/%3a}_$arch.deb"
  [ -s "$f" ] || apt-get "${opts[@]}" download -qq "$p" >/dev/null 2>"$state/download.log" || { tail -n 5 "$state/download.log" >&2; exit 1; }
  [ -s "$f" ] || f=$(ls -t "${p}"_*_"$arch".deb | head -n1)
  echo "$out/$f"
done
