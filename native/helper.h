/*
 * mbuild-helper: declarations shared by its source files (one program, built by one `cc` line in
 * scripts/build-native.mjs from every .c file in native/).
 *
 *   common.c    errors, input buffers, string builders, filesystem magic
 *   fsops.c     `fsops` and `find-opaque` (and the opaque walk `run` reports with)
 *   spec.c      the `run` sandbox spec
 *   rootfs.c    the rootfs mount: overlay (with the long-lowerdir fallbacks) or a bound directory
 *   mount.c     `mount`: the same overlay mount for the builder itself (COPY, WORKDIR, views)
 *   targets.c   mount targets in the rootfs and the stubs created for them
 *   usermounts.c RUN --mount binds, scratch overlays and tmpfs, and their targets
 *   pseudofs.c  /proc, /sys and /dev inside the sandbox
 *   net.c       loopback and bridge networking
 *   sandbox.c   the child (pid 1): cgroups, pivot_root, privileges, exec
 *   run.c       the outer `run` helper: namespaces, fork, wait, status records
 *   main.c      the command line
 */
#ifndef MBUILD_HELPER_H
#define MBUILD_HELPER_H

#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/capability.h>

/* Syscall numbers >= 424 are the same on every architecture. */
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

#define MB_FSOPEN_CLOEXEC 0x1
#define MB_FSCONFIG_SET_FLAG 0
#define MB_FSCONFIG_SET_STRING 1
#define MB_FSCONFIG_CMD_CREATE 6
#define MB_FSMOUNT_CLOEXEC 0x1
#define MB_MOUNT_ATTR_NODEV 0x4
#define MB_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define MB_CLOSE_RANGE_CLOEXEC (1U << 2)
#define MB_RESOLVE_NO_XDEV 0x01
#define MB_RESOLVE_NO_MAGICLINKS 0x02
#define MB_RESOLVE_IN_ROOT 0x10

#define OVERLAYFS_MAGIC 0x794c7630
#define PROCFS_MAGIC 0x9fa0
#define SYSFS_MAGIC_ 0x62656572
#define TMPFS_MAGIC_ 0x01021994

/* Overlay's opaque mark: trusted.overlay.opaque as root; in a user namespace (rootless mbuild)
 * trusted.* cannot be written, so overlays are mounted with "userxattr" and use user.overlay.* */
#define OPAQUE_XATTR (in_user_namespace() ? "user.overlay.opaque" : "trusted.overlay.opaque")
/* 1 when this process runs in a user namespace other than the initial one (rootless mbuild) */
int in_user_namespace(void);
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define SETUP_EXIT 125

struct mb_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};

/* common.c ------------------------------------------------------------- */

extern char g_err[2048];

/* Records the first error; always returns -1. */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void write_all(int fd, const void *p, size_t n);
const char *fdpath(int fd, char *buf, size_t n);

struct buf {
  char *data;
  size_t len;
};

int read_all(int fd, struct buf *b, size_t max);
const char *next_field(struct buf *b, size_t *pos, int *truncated);
int parse_ulong(const char *s, unsigned long max, unsigned long *out, int base);

struct strlist {
  const char **v;
  size_t n, cap;
};

int sl_push(struct strlist *l, const char *s);

struct sbuf {
  char *p;
  size_t len, cap;
};

int sb_add(struct sbuf *s, const char *t, size_t n);
int sb_str(struct sbuf *s, const char *t);

int fs_magic_is(int fd, long magic);

/* fsops.c -------------------------------------------------------------- */

int run_fsops(void);
int run_find_opaque(const char *root);
void raise_nofile(void);
int is_opaque(int fd);
int collect_opaque(int dirfd, const char **p, size_t *n);

/* spec.c --------------------------------------------------------------- */

enum { NET_HOST = 0, NET_NONE = 1, NET_BRIDGE = 2, NET_JOIN = 3 };

struct run_spec {
  const char *nonce, *state, *upper, *work, *cwd, *hostname;
  const char *rootfsdir; /* copy snapshotter: a plain dir bind-mounted as the root instead of an overlay */
  int net_mode; /* NET_HOST, NET_NONE, NET_BRIDGE, NET_JOIN */
  const char *netns;
  int forward_signals;
  int insecure; /* RUN --security=insecure: every capability, no seccomp, nothing masked */
  int report_opaque;
  struct strlist cgroups;
  long ppid;
  uid_t uid;
  gid_t gid;
  struct strlist lowers, args, env;
  gid_t *groups;
  size_t ngroups;
  char rootfs[PATH_MAX], empty[PATH_MAX];
  unsigned long long shm_kb; /* size of /dev/shm (--shm-size); 0: 64 MiB */
  struct { int resource; struct rlimit lim; } rlimits[16]; /* --ulimit, set before privileges drop */
  size_t nrlimits;
};

/* /dev/shm's size in KiB for setup_dev (pseudofs.c) */
extern unsigned long long g_shm_kb;

int parse_run_spec(struct buf *b, struct run_spec *s);

/* rootfs.c ------------------------------------------------------------- */

int mount_rootfsdir(struct run_spec *s);
int mount_overlay(struct run_spec *s);

/* mount.c -------------------------------------------------------------- */

int run_mount(void);

/* targets.c ------------------------------------------------------------ */

enum { TGT_SKIP = 0, TGT_DIRECT = 1, TGT_INSCOPE = 2 };

struct target {
  const char *path; /* relative to the rootfs */
  int isdir;
  int strict;       /* must be a real directory: a symlink is refused */
  const char *src;  /* bind source in the state dir (files only) */
  int how;
};

#define NTARGETS 6
extern struct target g_targets[NTARGETS]; /* /etc files, then proc, sys, dev (in that order) */

/* With a plain (bind-mounted) root, targets must be on the root's own filesystem (no overlay magic). */
extern int g_plain_root;
extern dev_t g_root_dev;

int prepare_target(int rootfd, int upperfd, struct target *t);
int remove_stubs(const char *upper);
int open_target(int rootfd, struct target *t);

/* usermounts.c --------------------------------------------------------- */

int parse_user_mount_field(const char *k, const char *v);
int check_user_mounts(void);
int prepare_user_mounts(int rootfd, int upperfd, const char *rootfs);
int mount_user_mounts(int rootfd);
int remove_user_stubs(const char *upper);

/* pseudofs.c ----------------------------------------------------------- */

int mount_at(const char *src, int fd, const char *type, unsigned long flags, const char *data, const char *what);
int setup_proc(int rootfd, struct target *t, int devnull, int unmasked);
/* sandbox.c */
uint64_t default_caps(void);
void seccomp_cache_path(char *buf, size_t n);
int setup_sys(int rootfd, struct target *t, int devnull, int unmasked);
int setup_dev(int rootfd, struct target *t);

/* net.c ---------------------------------------------------------------- */

/* What the caller sends on fd 3 once it has moved the veth end into our namespace. */
struct netcfg {
  struct in_addr addr, mask, gw;
  int have_gw;
  char ifname[IFNAMSIZ];
};

int bring_up_lo(void);
int read_netcfg(int fd, struct netcfg *c);
int configure_net(const struct netcfg *c);

/* sandbox.c ------------------------------------------------------------ */

extern int g_errpipe, g_syncpipe, g_gopipe;

void __attribute__((noreturn)) child_main(struct run_spec *s);

/* run.c ---------------------------------------------------------------- */

extern volatile sig_atomic_t g_child, g_killreq, g_forward;

int run_main(void);

#endif
