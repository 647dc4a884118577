/*
 * Docker's default seccomp profile for RUN steps (native/seccomp-default.json, turned into a C table
 * by scripts/gen-seccomp.mjs), loaded with libseccomp as runc does.
 */
#ifndef MBUILD_SECCOMP_H
#define MBUILD_SECCOMP_H
#include <stddef.h>
#include <stdint.h>

struct sock_filter;
struct mb_seccomp_prog {
  struct sock_filter *filter; /* malloc'd */
  size_t len;
};

/*
 * The profile's program as it applies to a process whose bounding set is `caps` (bit n = capability
 * n): rules are included or left out by capability, architecture and kernel version as moby does.
 * Syscalls newer than libseccomp knows fail with ENOSYS (not EPERM), so libc falls back.
 * cache: a file mb_seccomp_export wrote (NULL or a stale one: the program is built here, ~25 ms of
 * CPU), read while the helper's own files are still in reach (before pivot_root).
 * Returns 0, or -1 with a message in err.
 */
int mb_seccomp_prepare(uint64_t caps, const char *cache, struct mb_seccomp_prog *out, char *err, size_t errlen);

/*
 * Loads a prepared program (and frees it). Needs CAP_SYS_ADMIN: no_new_privs is left off, so setuid
 * programs in the step work as under Docker. Returns 0, or -1 with a message in err.
 */
int mb_seccomp_load(struct mb_seccomp_prog *p, char *err, size_t errlen);

/* Writes the program for `caps` to `path` (with the key mb_seccomp_prepare checks in `cache`). */
int mb_seccomp_export(uint64_t caps, const char *path, char *err, size_t errlen);

#endif
