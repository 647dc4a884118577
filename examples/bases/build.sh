#!/usr/bin/env bash
# Builds the example base images with mbuild itself, from Debian's packages (there is no Docker Hub here):
#   busybox          FROM scratch + ADD of a rootfs made from busybox-static
#   alpine           busybox + musl's loader and libc (a slim musl base, Alpine's shape)
#   debian:bookworm  FROM scratch + ADD of a `debootstrap --variant=minbase bookworm` tarball
#   golang           debian:bookworm + `apt-get install golang-go`
#
# Usage: examples/bases/build.sh [NAME...]     (default: all four; what a base needs is built first)
# An image that exists (`mbuild inspect NAME` exits 0) is skipped. Honours MBUILD_ROOT like mbuild does.
# Environment:
#   MBUILD_BASES_CACHE   where the debootstrap tarball is kept (default /var/cache/mbuild-bases),
#                        keyed by mirror and the suite's Release date
#   MBUILD_DEBIAN_MIRROR the Debian mirror (default: the first bookworm URI in /etc/apt/sources.list(.d))
#   MBUILD_BASES_NETWORK --network for golang's RUN (default: mbuild's default; if that fails, host is tried)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${MBUILD_BASES_CACHE:-/var/cache/mbuild-bases}
mb() { node "$repo/bin/mbuild.js" "$@"; }
say() { echo "bases: $*" >&2; }

need_pkgs() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# tar a directory reproducibly: sorted, root-owned, one mtime
tar_dir() { # DIR OUT MTIME
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$3" -C "$1" -cf "$2" .
}

mk_busybox() {
  need_pkgs busybox-static
  local d bb=/bin/busybox p
  d=$(mktemp -d)
  install -d -m 0755 "$d"/{bin,sbin,usr/bin,usr/sbin,etc,home,var,var/spool/mail,dev,proc,sys,run}
  install -d -m 0700 "$d/root"
  install -d -m 1777 "$d/tmp"
  install -m 0755 "$bb" "$d/bin/busybox"
  for p in $("$bb" --list-full); do
    case "$p" in bin/busybox | linuxrc) continue ;; esac
    [ -e "$d/$p" ] || ln -s /bin/busybox "$d/$p"
  done
  cat >"$d/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$d/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
www-data:x:33:
users:x:100:
nogroup:x:65534:
EOF
  printf 'root:*:19000:0:99999:7:::\n' >"$d/etc/shadow" && chmod 0640 "$d/etc/shadow"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$d/etc/hosts"
  printf 'hosts: files dns\n' >"$d/etc/nsswitch.conf"
  tar_dir "$d" "$here/busybox/rootfs.tar" "$(stat -c %Y "$bb")"
  rm -rf "$d"
}

mk_musl() {
  need_pkgs musl busybox-static
  local d libc=/lib/x86_64-linux-musl/libc.so
  d=$(mktemp -d)
  install -d -m 0755 "$d/lib" "$d/etc" "$d/usr/bin"
  # Alpine's layout: the loader is libc itself; musl's loader acts as ldd when called by that name
  install -m 0755 "$libc" "$d/lib/ld-musl-x86_64.so.1"
  ln -s ld-musl-x86_64.so.1 "$d/lib/libc.musl-x86_64.so.1"
  ln -s /lib/ld-musl-x86_64.so.1 "$d/usr/bin/ldd"
  local mv bv
  mv=$(dpkg-query -W -f '${Version}' musl)
  bv=$(dpkg-query -W -f '${Version}' busybox-static)
  bv=${bv#*:}
  cat >"$d/etc/os-release" <<EOF
NAME="mbuild slim musl base"
ID=mbuild-alpine
ID_LIKE=alpine
VERSION_ID=${mv%%-*}
PRETTY_NAME="busybox ${bv} + musl ${mv} (Debian packages), built by mbuild"
HOME_URL="https://www.debian.org/"
EOF
  tar_dir "$d" "$here/alpine/musl.tar" "$(stat -c %Y "$libc")"
  rm -rf "$d"
}

# The Debian mirror apt uses here: deb822 .sources stanzas or one-line sources.list entries.
debian_mirror() {
  if [ -n "${MBUILD_DEBIAN_MIRROR:-}" ]; then echo "$MBUILD_DEBIAN_MIRROR"; return; fi
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush() { if (ok && uri != "") { print uri; exit } ok = 0; uri = "" }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") ok = 1 }
      END { flush() }' "$f"
  done | head -n1 | grep . && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed -E 's/\[[^]]*\]//' |
    awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' | grep . && return
  echo "http://deb.debian.org/debian"
}

# The suite's Release date from apt's lists (changes with each point release), else today.
release_date() { # MIRROR
  local host_path lists=/var/lib/apt/lists f
  host_path=$(echo "${1%/}" | sed -E 's#^[a-z]+://##; s#/#_#g')
  for f in "$lists/${host_path}_dists_bookworm_InRelease" "$lists/${host_path}_dists_bookworm_Release"; do
    if [ -f "$f" ]; then
      date -u -d "$(sed -n 's/^Date: //p' "$f" | head -n1)" +%Y%m%d && return
    fi
  done
  date -u +%Y%m%d
}

mk_debian() {
  need_pkgs debootstrap
  local mirror key tarball
  mirror=$(debian_mirror)
  # keyed by the suite's date, the mirror and this script (which decides what the tarball holds)
  key="$(release_date "$mirror")-$( (echo "$mirror"; cat "$here/build.sh") | sha256sum | cut -c1-12)"
  tarball="$cache/debian-bookworm-minbase-$key.tar.gz"
  if [ ! -f "$tarball" ]; then
    say "debootstrap --variant=minbase bookworm from $mirror (cached as $tarball)"
    mkdir -p "$cache"
    local d t0
    t0=$(date +%s)
    d=$(mktemp -d "$cache/debootstrap-XXXXXX")
    # a private mount namespace: debootstrap's /proc and /sys mounts cannot outlive it
    if ! unshare --mount --propagation private debootstrap --variant=minbase bookworm "$d" "$mirror" >"$d.log" 2>&1; then
      tail -n 20 "$d.log" >&2
      rm -rf "$d" "$d.log"
      say "debootstrap failed"
      return 1
    fi
    # what Docker's debian images leave out or add: no device nodes, caches, host files; no service starts
    rm -rf "$d"/dev/* "$d"/proc/* "$d"/sys/* "$d"/run/* "$d"/tmp/* "$d"/var/tmp/*
    rm -rf "$d"/var/cache/apt/archives/*.deb "$d"/var/cache/apt/*.bin "$d"/var/lib/apt/lists/*
    rm -f "$d/etc/resolv.conf" "$d/etc/hostname"
    printf '#!/bin/sh\nexit 101\n' >"$d/usr/sbin/policy-rc.d" && chmod 0755 "$d/usr/sbin/policy-rc.d"
    # apt keeps no .deb files or package caches in image layers, and fetches no translations
    local clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
    cat >"$d/etc/apt/apt.conf.d/docker-clean" <<EOF
DPkg::Post-Invoke { $clean };
APT::Update::Post-Invoke { $clean };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$d/etc/apt/apt.conf.d/docker-no-languages"
    tar --sort=name --numeric-owner -C "$d" -cf - . | gzip -n >"$tarball.$$.part"
    mv "$tarball.$$.part" "$tarball"
    rm -rf "$d" "$d.log"
    find "$cache" -maxdepth 1 -name 'debian-bookworm-minbase-*.tar.gz' ! -name "${tarball##*/}" -delete # older keys
    say "debootstrap and tarball took $(($(date +%s) - t0))s"
  fi
  ln -f "$tarball" "$here/debian/rootfs.tar.gz" 2>/dev/null || cp "$tarball" "$here/debian/rootfs.tar.gz"
}

have() { mb inspect "$1" >/dev/null 2>&1; }

build_one() { # NAME DIR [mbuild build flags...]
  local name=$1 dir=$2 t0
  shift 2
  t0=$(date +%s)
  mb build --progress plain -t "$name" "$@" "$here/$dir" || return 1
  say "built $name in $(($(date +%s) - t0))s"
}

ensure() { # NAME
  local name=$1
  have "$name" && { say "$name exists"; return 0; }
  case "$name" in
    busybox) mk_busybox && build_one busybox busybox ;;
    alpine) ensure busybox && mk_musl && build_one alpine alpine ;;
    debian:bookworm | debian) mk_debian && build_one debian:bookworm debian ;;
    golang)
      ensure debian:bookworm
      if [ -n "${MBUILD_BASES_NETWORK:-}" ]; then
        build_one golang golang --network "$MBUILD_BASES_NETWORK"
      elif ! build_one golang golang; then
        say "golang failed with the default RUN network; trying --network host"
        build_one golang golang --network host
      fi
      ;;
    *) say "unknown base $name (busybox, alpine, debian:bookworm, golang)"; return 2 ;;
  esac
}

[ $# -gt 0 ] || set -- busybox alpine debian:bookworm golang
for base in "$@"; do ensure "$base"; done
