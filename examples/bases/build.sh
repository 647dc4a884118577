#!/usr/bin/env bash
# Builds the example base images with mbuild itself, from Debian's packages (there is no Docker Hub here):
#   busybox          FROM scratch + ADD of a rootfs made from busybox-static
#   alpine           busybox + musl's loader and libc (a slim musl base, Alpine's shape)
#   debian:bookworm  FROM scratch + ADD of a `debootstrap --variant=minbase bookworm` tarball
#   golang           debian:bookworm + `apt-get install golang-go`
#
# Usage: examples/bases/build.sh [--platform P[,P...]] [NAME...]
#   (default: all four; what a base needs is built first)
# An image that exists (`mbuild inspect NAME` exits 0) is skipped. Honours MBUILD_ROOT like mbuild does.
#
# --platform linux/arm64 (or a list, e.g. linux/arm64,linux/amd64): each base becomes one
# multi-platform image (an OCI index) for this machine's platform and the ones named, built with
# `mbuild build --platform`; existing images are rebuilt (mbuild's build cache makes that quick).
# A foreign platform's files come from Debian's packages of that architecture (foreign-debs.sh: a
# private apt state, the machine's apt setup is not changed), debian's rootfs from `debootstrap
# --foreign --arch ARCH` and its second stage in a chroot under qemu-user; golang's RUN apt-get runs
# under emulation (slow: minutes). It installs what it needs itself (qemu-user-static, debootstrap);
# scripts/setup.sh does not, as the default path needs none of it. Platforms: linux/amd64, linux/arm64.
# Environment:
#   MBUILD_BASES_CACHE   where the debootstrap tarballs (one per architecture) and foreign .debs are
#                        kept (default /var/cache/mbuild-bases), keyed by mirror and the suite's Release date
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

# Go's architecture (what images and TARGETARCH say) <-> Debian's, for the platforms build.sh makes
deb_arch() { case "$1" in amd64 | arm64) echo "$1" ;; *) return 1 ;; esac; }
host_arch() { dpkg --print-architecture; }
qemu_arch() { case "$1" in arm64) echo aarch64 ;; amd64) echo x86_64 ;; esac; }
# musl's loader and triplet take qemu's architecture names
musl_arch() { qemu_arch "$1"; }

# a Debian package of a foreign architecture, extracted to DIR (fetched once, kept in the cache); prints its version
foreign_pkg() { # ARCH PKG DIR
  local deb
  deb=$(bash "$here/foreign-debs.sh" "$1" "$cache/debs-$1" "$2") || return 1
  mkdir -p "$3"
  dpkg-deb -x "$deb" "$3"
  dpkg-deb -f "$deb" Version
}

# A binfmt_misc handler with the F flag for ARCH's qemu (what mbuild's ensureEmulation does), for
# debootstrap's second stage in a chroot: the handler must work where the interpreter's path is not
ensure_binfmt() { # ARCH
  local q dir=/proc/sys/fs/binfmt_misc line
  q=$(qemu_arch "$1")
  [ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir"
  if [ -e "$dir/qemu-$q" ]; then
    grep -q '^flags:.*F' "$dir/qemu-$q" && return 0
    say "$dir/qemu-$q has no F flag (its interpreter cannot be found in a chroot): remove it (echo -1 > $dir/qemu-$q) and run this again"
    return 1
  fi
  line=$(grep -v '^[#;]' "/usr/lib/binfmt.d/qemu-$q.conf" | head -n1)
  case "${line##*:}" in *F*) ;; *) line="${line}F" ;; esac
  printf '%s' "$line" >"$dir/register"
}

mk_busybox() { # ARCH (default: this machine's)
  local arch=${1:-$(host_arch)} d bb=/bin/busybox p list
  d=$(mktemp -d)
  if [ "$arch" = "$(host_arch)" ]; then
    need_pkgs busybox-static
    list=$("$bb" --list-full)
  else
    need_pkgs qemu-user-static
    foreign_pkg "$arch" busybox-static "$d.deb" >/dev/null
    bb="$d.deb/bin/busybox"
    list=$("/usr/bin/qemu-$(qemu_arch "$arch")-static" "$bb" --list-full)
  fi
  install -d -m 0755 "$d"/{bin,sbin,usr/bin,usr/sbin,etc,home,var,var/spool/mail,dev,proc,sys,run}
  install -d -m 0700 "$d/root"
  install -d -m 1777 "$d/tmp"
  install -m 0755 "$bb" "$d/bin/busybox"
  for p in $list; do
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
  tar_dir "$d" "$here/busybox/rootfs-$arch.tar" "$(stat -c %Y "$bb")"
  rm -rf "$d" "$d.deb"
}

mk_musl() { # ARCH (default: this machine's)
  local arch=${1:-$(host_arch)} d x m libc mv bv
  d=$(mktemp -d)
  m=$(musl_arch "$arch")
  if [ "$arch" = "$(host_arch)" ]; then
    need_pkgs musl busybox-static
    x=
    mv=$(dpkg-query -W -f '${Version}' musl)
    bv=$(dpkg-query -W -f '${Version}' busybox-static)
  else
    need_pkgs qemu-user-static
    x=$d.deb
    mv=$(foreign_pkg "$arch" musl "$x")
    bv=$(foreign_pkg "$arch" busybox-static "$d.bb")
    rm -rf "$d.bb"
  fi
  libc=$x/lib/$m-linux-musl/libc.so
  install -d -m 0755 "$d/lib" "$d/etc" "$d/usr/bin"
  # Alpine's layout: the loader is libc itself; musl's loader acts as ldd when called by that name
  install -m 0755 "$libc" "$d/lib/ld-musl-$m.so.1"
  ln -s "ld-musl-$m.so.1" "$d/lib/libc.musl-$m.so.1"
  ln -s "/lib/ld-musl-$m.so.1" "$d/usr/bin/ldd"
  bv=${bv#*:}
  cat >"$d/etc/os-release" <<EOF
NAME="mbuild slim musl base"
ID=mbuild-alpine
ID_LIKE=alpine
VERSION_ID=${mv%%-*}
PRETTY_NAME="busybox ${bv} + musl ${mv} (Debian packages), built by mbuild"
HOME_URL="https://www.debian.org/"
EOF
  tar_dir "$d" "$here/alpine/musl-$arch.tar" "$(stat -c %Y "$libc")"
  rm -rf "$d" "$d.deb"
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

mk_debian() { # ARCH (default: this machine's)
  local arch=${1:-$(host_arch)}
  need_pkgs debootstrap
  local mirror key tarball
  mirror=$(debian_mirror)
  # keyed by the suite's date, the mirror and the functions that decide what the tarball holds
  key="$(release_date "$mirror")-$( (echo "$mirror"; declare -f mk_debian ensure_binfmt) | sha256sum | cut -c1-12)"
  tarball="$cache/debian-bookworm-$arch-minbase-$key.tar.gz"
  if [ ! -f "$tarball" ]; then
    mkdir -p "$cache"
    local d t0 boot
    t0=$(date +%s)
    d=$(mktemp -d "$cache/debootstrap-XXXXXX")
    if [ "$arch" = "$(host_arch)" ]; then
      say "debootstrap --variant=minbase bookworm from $mirror (cached as $tarball)"
      boot=(debootstrap --variant=minbase bookworm "$d" "$mirror")
    else
      # the first stage unpacks arm64 packages; the second runs their scripts in a chroot, under qemu
      say "debootstrap --foreign --arch $arch --variant=minbase bookworm from $mirror, second stage under qemu (slow; cached as $tarball)"
      need_pkgs qemu-user-static
      ensure_binfmt "$arch"
      boot=(sh -c 'debootstrap --foreign --arch "$1" --variant=minbase bookworm "$2" "$3" && chroot "$2" /debootstrap/debootstrap --second-stage' sh "$arch" "$d" "$mirror")
    fi
    # a private mount namespace: debootstrap's /proc and /sys mounts cannot outlive it
    if ! unshare --mount --propagation private "${boot[@]}" >"$d.log" 2>&1; then
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
    find "$cache" -maxdepth 1 -name "debian-bookworm-$arch-minbase-*.tar.gz" ! -name "${tarball##*/}" -delete # older keys
    say "debootstrap and tarball took $(($(date +%s) - t0))s"
  fi
  ln -f "$tarball" "$here/debian/rootfs-$arch.tar.gz" 2>/dev/null || cp "$tarball" "$here/debian/rootfs-$arch.tar.gz"
}

have() { mb inspect "$1" >/dev/null 2>&1; }

build_one() { # NAME DIR [mbuild build flags...]
  local name=$1 dir=$2 t0
  shift 2
  t0=$(date +%s)
  mb build --progress plain -t "$name" ${platforms:+--platform "$platforms"} "$@" "$here/$dir" || return 1
  say "built $name${platforms:+ for $platforms} in $(($(date +%s) - t0))s"
}

# the architectures to make files for: this machine's, and with --platform the ones named
arches() {
  local p a seen=" "
  for p in $(host_arch) ${platforms//,/ }; do
    a=${p#linux/}
    a=${a%%/*}
    case "$seen" in *" $a "*) continue ;; esac
    seen="$seen$a "
    echo "$a"
  done
}

each_arch() { # FUNCTION: runs it for every architecture
  local a
  for a in $(arches); do "$1" "$a" || return 1; done
}

built=" "
ensure() { # NAME
  local name=$1
  case "$built" in *" $name "*) return 0 ;; esac
  # with --platform every base is built again (for the platforms asked; the build cache keeps it quick)
  if [ -z "$platforms" ] && have "$name"; then say "$name exists"; return 0; fi
  case "$name" in
    busybox) each_arch mk_busybox && build_one busybox busybox ;;
    alpine) ensure busybox && each_arch mk_musl && build_one alpine alpine ;;
    debian:bookworm | debian) each_arch mk_debian && build_one debian:bookworm debian ;;
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
  built="$built$name "
}

platforms=
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) platforms=${2:?--platform needs a value, e.g. linux/arm64}; shift 2 ;;
    --platform=*) platforms=${1#--platform=}; shift ;;
    *) break ;;
  esac
done
if [ -n "$platforms" ]; then
  for p in ${platforms//,/ }; do
    a=${p#linux/}
    case "$p" in
      linux/amd64 | linux/arm64 | linux/arm64/v8) ;;
      *) say "--platform $p: build.sh makes linux/amd64 and linux/arm64"; exit 2 ;;
    esac
    deb_arch "${a%%/*}" >/dev/null
  done
  # the host's platform is always in the image, so the examples built on this machine find theirs
  case ",$platforms," in *",linux/$(host_arch)"[,/]*) ;; *) platforms="linux/$(host_arch),$platforms" ;; esac
fi
[ $# -gt 0 ] || set -- busybox alpine debian:bookworm golang
for base in "$@"; do ensure "$base"; done
