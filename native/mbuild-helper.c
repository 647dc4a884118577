/*
 * mbuild-helper: the few things mbuild needs that Node cannot do.
 *
 *   mbuild-helper fsops              ops on stdin (NUL-separated fields), see run_fsops()
 *   mbuild-helper find-opaque ROOT   NUL-separated relative paths of opaque dirs on stdout
 *   mbuild-helper run                sandbox spec on stdin (NUL-separated key/value pairs), see run_main()
 *
 * run, network modes: host (the helper's own), none (new netns, lo only), bridge (new netns; the
 * helper announces it with a "netns:<pid>" status record and waits for the caller to plug a veth
 * named eth0 in and to send the address on fd 3), join (setns into "netns PATH").
 * "cgroup PATH" (repeatable): cgroup.procs files the command joins before anything else runs.
 * "signals forward": SIGINT/SIGTERM/SIGHUP/SIGQUIT go to the command instead of killing it.
 * "opaque 1" (overlay mode): once the command has exited, report the upper dir's opaque dirs (as
 * find-opaque lists them, hex-encoded) in an "opaque:<hex>" record before the exit status, which
 * saves the caller starting find-opaque for the layer.
 * SIGUSR1 always kills the command.
 *
 * Written for mbuild; Linux only, must run as real root (init user namespace).
 */
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

#define OPAQUE_XATTR "trusted.overlay.opaque"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define SETUP_EXIT 125

struct mb_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};

/* ------------------------------------------------------------------ errors */

static char g_err[2048];

/* Records the first error; always returns -1. */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
  if (g_err[0]) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  return -1;
}

static void write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    c += w;
    n -= (size_t)w;
  }
}

static const char *fdpath(int fd, char *buf, size_t n) {
  snprintf(buf, n, "/proc/self/fd/%d", fd);
  return buf;
}

/* --------------------------------------------------------- input buffers */

struct buf {
  char *data;
  size_t len;
};

static int read_all(int fd, struct buf *b, size_t max) {
  size_t cap = 65536;
  b->data = malloc(cap + 1);
  b->len = 0;
  if (!b->data) return fail("out of memory");
  for (;;) {
    if (b->len == cap) {
      if (cap >= max) return fail("input larger than %zu bytes", max);
      cap *= 2;
      char *n = realloc(b->data, cap + 1);
      if (!n) return fail("out of memory");
      b->data = n;
    }
    ssize_t r = read(fd, b->data + b->len, cap - b->len);
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail("reading stdin: %s", strerror(errno));
    }
    if (r == 0) break;
    b->len += (size_t)r;
  }
  b->data[b->len] = '\0';
  return 0;
}

/* Next NUL-terminated field of b starting at *pos, or NULL at the end / on truncation. */
static const char *next_field(struct buf *b, size_t *pos, int *truncated) {
  if (*pos >= b->len) return NULL;
  const char *f = b->data + *pos;
  size_t l = strnlen(f, b->len - *pos);
  if (*pos + l >= b->len) {
    *truncated = 1;
    return NULL;
  }
  *pos += l + 1;
  return f;
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out, int base) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, base);
  if (errno || *end || v > max || s[0] == '-') return -1;
  *out = v;
  return 0;
}

/* ------------------------------------------------------------------ fsops */

/* On failure: a record "op\0path\0errno\0message\0" on stdout, a line on stderr, exit 1. */
static int fsop_error(const char *op, const char *path, int err) {
  char num[32];
  snprintf(num, sizeof num, "%d", err);
  const char *msg = strerror(err);
  write_all(1, op, strlen(op) + 1);
  write_all(1, path, strlen(path) + 1);
  write_all(1, num, strlen(num) + 1);
  write_all(1, msg, strlen(msg) + 1);
  dprintf(2, "mbuild-helper: %s %s: %s\n", op, path, msg);
  return 1;
}

static int run_fsops(void) {
  struct buf b;
  if (read_all(0, &b, (size_t)1 << 31) < 0) {
    dprintf(2, "mbuild-helper: %s\n", g_err);
    return 2;
  }
  umask(0);
  size_t pos = 0;
  int trunc = 0;
  const char *op;
  while ((op = next_field(&b, &pos, &trunc)) != NULL) {
    const char *path = next_field(&b, &pos, &trunc);
    if (!path || path[0] != '/') goto malformed;
    if (!strcmp(op, "whiteout")) {
      if (mknod(path, S_IFCHR | 0, makedev(0, 0)) < 0) return fsop_error(op, path, errno);
    } else if (!strcmp(op, "opaque")) {
      int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return fsop_error(op, path, errno);
      if (fsetxattr(fd, OPAQUE_XATTR, "y", 1, 0) < 0) {
        int e = errno;
        close(fd);
        return fsop_error(op, path, e);
      }
      close(fd);
    } else if (!strcmp(op, "mknod")) {
      const char *type = next_field(&b, &pos, &trunc);
      const char *mode_s = next_field(&b, &pos, &trunc);
      const char *maj_s = next_field(&b, &pos, &trunc);
      const char *min_s = next_field(&b, &pos, &trunc);
      unsigned long mode, maj, min;
      if (!type || parse_ulong(mode_s, 07777, &mode, 10) < 0 || parse_ulong(maj_s, 0xfffff, &maj, 10) < 0 ||
          parse_ulong(min_s, 0xfffff, &min, 10) < 0)
        goto malformed;
      mode_t fmt;
      if (!strcmp(type, "c")) fmt = S_IFCHR;
      else if (!strcmp(type, "b")) fmt = S_IFBLK;
      else if (!strcmp(type, "p")) fmt = S_IFIFO;
      else goto malformed;
      dev_t dev = fmt == S_IFIFO ? 0 : makedev((unsigned)maj, (unsigned)min);
      if (mknod(path, fmt | (mode_t)mode, dev) < 0) return fsop_error(op, path, errno);
    } else {
      goto malformed;
    }
  }
  if (trunc) goto malformed;
  return 0;
malformed:
  dprintf(2, "mbuild-helper: malformed fsops input\n");
  return 2;
}

/* ------------------------------------------------------------ find-opaque */

static char g_rel[65536];

/* where walk_opaque puts what it finds: stdout (find-opaque), or a buffer (run's "opaque" report) */
static int g_opaque_collect; /* 1: into the buffer; -1: the buffer could not grow */
static char *g_opaque_p;
static size_t g_opaque_len, g_opaque_cap;

static void opaque_out(const char *p, size_t n) {
  if (!g_opaque_collect) {
    write_all(1, p, n);
    return;
  }
  if (g_opaque_collect < 0) return;
  if (g_opaque_len + n > g_opaque_cap) {
    size_t cap = g_opaque_cap ? g_opaque_cap : 4096;
    while (cap < g_opaque_len + n) cap *= 2;
    char *q = realloc(g_opaque_p, cap);
    if (!q) {
      g_opaque_collect = -1;
      return;
    }
    g_opaque_p = q;
    g_opaque_cap = cap;
  }
  memcpy(g_opaque_p + g_opaque_len, p, n);
  g_opaque_len += n;
}

/* a walk holds a directory fd per level: allow as many as the hard limit */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int is_opaque(int fd) {
  char v[8];
  ssize_t n = fgetxattr(fd, OPAQUE_XATTR, v, sizeof v);
  return n == 1 && v[0] == 'y';
}

/* dirfd: an O_RDONLY directory fd (owned by this call); rellen: length of its relative path in g_rel. */
static int walk_opaque(int dirfd, size_t rellen) {
  if (is_opaque(dirfd)) {
    if (rellen == 0) opaque_out(".", 2);
    else opaque_out(g_rel, rellen + 1);
  }
  int dfd = dup(dirfd);
  if (dfd < 0) {
    close(dirfd);
    return fail("dup: %s", strerror(errno));
  }
  DIR *d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    close(dirfd);
    return fail("opendir %s: %s", rellen ? g_rel : ".", strerror(errno));
  }
  int rc = 0;
  struct dirent *e;
  for (;;) {
    errno = 0;
    e = readdir(d);
    if (!e) {
      if (errno) rc = fail("readdir %s: %s", rellen ? g_rel : ".", strerror(errno));
      break;
    }
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) continue;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) continue;
    }
    size_t nl = strlen(e->d_name);
    size_t newlen = rellen ? rellen + 1 + nl : nl;
    if (newlen + 1 >= sizeof g_rel) {
      rc = fail("path too long below %s", g_rel);
      break;
    }
    int cfd = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cfd < 0) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue; /* vanished or replaced */
      rc = fail("open %s/%s: %s", rellen ? g_rel : ".", e->d_name, strerror(errno));
      break;
    }
    if (rellen) g_rel[rellen] = '/';
    memcpy(g_rel + (rellen ? rellen + 1 : 0), e->d_name, nl + 1);
    rc = walk_opaque(cfd, newlen);
    g_rel[rellen] = '\0';
    if (rc < 0) break;
  }
  closedir(d);
  close(dirfd);
  return rc;
}

static int run_find_opaque(const char *root) {
  raise_nofile();
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    dprintf(2, "mbuild-helper: find-opaque %s: %s\n", root, strerror(errno));
    return 1;
  }
  g_rel[0] = '\0';
  if (walk_opaque(fd, 0) < 0) {
    dprintf(2, "mbuild-helper: find-opaque %s: %s\n", root, g_err);
    return 1;
  }
  return 0;
}

/* ===================================================================== run */

struct strlist {
  const char **v;
  size_t n, cap;
};

static int sl_push(struct strlist *l, const char *s) {
  if (l->n + 1 >= l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    const char **nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) return fail("out of memory");
    l->v = nv;
    l->cap = nc;
  }
  l->v[l->n++] = s;
  l->v[l->n] = NULL;
  return 0;
}

enum { NET_HOST = 0, NET_NONE = 1, NET_BRIDGE = 2, NET_JOIN = 3 };

struct run_spec {
  const char *nonce, *state, *upper, *work, *cwd, *hostname;
  const char *rootfsdir; /* copy snapshotter: a plain dir bind-mounted as the root instead of an overlay */
  int net_mode; /* NET_HOST, NET_NONE, NET_BRIDGE, NET_JOIN */
  const char *netns;
  int forward_signals;
  int report_opaque;
  struct strlist cgroups;
  long ppid;
  uid_t uid;
  gid_t gid;
  struct strlist lowers, args, env;
  gid_t *groups;
  size_t ngroups;
  char rootfs[PATH_MAX], empty[PATH_MAX];
};

static int parse_run_spec(struct buf *b, struct run_spec *s) {
  size_t pos = 0;
  int trunc = 0, have_uid = 0, have_gid = 0;
  const char *k;
  s->ppid = -1;
  s->groups = calloc(b->len / 2 + 1, sizeof(gid_t));
  if (!s->groups) return fail("out of memory");
  while ((k = next_field(b, &pos, &trunc)) != NULL) {
    const char *v = next_field(b, &pos, &trunc);
    unsigned long n;
    if (!v) break;
    if (!strcmp(k, "nonce")) s->nonce = v;
    else if (!strcmp(k, "ppid")) {
      if (parse_ulong(v, INT32_MAX, &n, 10) < 0) return fail("bad ppid");
      s->ppid = (long)n;
    } else if (!strcmp(k, "state")) s->state = v;
    else if (!strcmp(k, "lower")) {
      if (sl_push(&s->lowers, v) < 0) return -1;
    } else if (!strcmp(k, "upper")) s->upper = v;
    else if (!strcmp(k, "rootfsdir")) s->rootfsdir = v;
    else if (!strcmp(k, "work")) s->work = v;
    else if (!strcmp(k, "arg")) {
      if (sl_push(&s->args, v) < 0) return -1;
    } else if (!strcmp(k, "env")) {
      if (sl_push(&s->env, v) < 0) return -1;
    } else if (!strcmp(k, "cwd")) s->cwd = v;
    else if (!strcmp(k, "uid")) {
      if (parse_ulong(v, UINT32_MAX - 1, &n, 10) < 0) return fail("bad uid %s", v);
      s->uid = (uid_t)n;
      have_uid = 1;
    } else if (!strcmp(k, "gid")) {
      if (parse_ulong(v, UINT32_MAX - 1, &n, 10) < 0) return fail("bad gid %s", v);
      s->gid = (gid_t)n;
      have_gid = 1;
    } else if (!strcmp(k, "group")) {
      if (parse_ulong(v, UINT32_MAX - 1, &n, 10) < 0) return fail("bad group %s", v);
      s->groups[s->ngroups++] = (gid_t)n;
    } else if (!strcmp(k, "hostname")) s->hostname = v;
    else if (!strcmp(k, "network")) {
      if (!strcmp(v, "none")) s->net_mode = NET_NONE;
      else if (!strcmp(v, "host")) s->net_mode = NET_HOST;
      else if (!strcmp(v, "bridge")) s->net_mode = NET_BRIDGE;
      else if (!strcmp(v, "join")) s->net_mode = NET_JOIN;
      else return fail("bad network mode %s", v);
    } else if (!strcmp(k, "netns")) s->netns = v;
    else if (!strcmp(k, "opaque")) s->report_opaque = !strcmp(v, "1");
    else if (!strcmp(k, "cgroup")) {
      if (v[0] != '/') return fail("spec: relative cgroup path %s", v);
      if (sl_push(&s->cgroups, v) < 0) return -1;
    } else if (!strcmp(k, "signals")) {
      if (!strcmp(v, "forward")) s->forward_signals = 1;
      else if (!strcmp(v, "kill")) s->forward_signals = 0;
      else return fail("bad signals mode %s", v);
    } else return fail("unknown spec key %s", k);
  }
  if (trunc) return fail("malformed spec");
  if (!s->state || s->state[0] != '/') return fail("spec: state dir missing");
  if (s->rootfsdir) {
    if (s->rootfsdir[0] != '/') return fail("spec: relative rootfs dir");
    if (s->upper || s->work || s->lowers.n) return fail("spec: rootfs dir given with overlay dirs");
  } else {
    if (!s->upper || s->upper[0] != '/') return fail("spec: upper dir missing or relative");
    if (!s->work || s->work[0] != '/') return fail("spec: work dir missing or relative");
  }
  if (!s->cwd || s->cwd[0] != '/') return fail("spec: cwd missing or relative");
  if (!s->hostname) s->hostname = "";
  if (strlen(s->hostname) > 64) return fail("hostname too long");
  if (s->args.n == 0) return fail("spec: no command");
  if (!have_uid || !have_gid) return fail("spec: uid/gid missing");
  if (s->net_mode == NET_JOIN && (!s->netns || s->netns[0] != '/')) return fail("spec: network join needs an absolute netns path");
  for (size_t i = 0; i < s->lowers.n; i++)
    if (s->lowers.v[i][0] != '/') return fail("spec: relative lower dir %s", s->lowers.v[i]);
  if (snprintf(s->rootfs, sizeof s->rootfs, "%s/rootfs", s->state) >= (int)sizeof s->rootfs) return fail("state path too long");
  snprintf(s->empty, sizeof s->empty, "%s/empty", s->state);
  if (!s->rootfsdir && s->lowers.n == 0 && sl_push(&s->lowers, s->empty) < 0) return -1;
  return 0;
}

/* Copy snapshotter: the prepared directory itself is the root, bound rw without device nodes. */
static int mount_rootfsdir(struct run_spec *s) {
  if (mount(s->rootfsdir, s->rootfs, NULL, MS_BIND, NULL) < 0)
    return fail("bind-mounting %s on %s: %s", s->rootfsdir, s->rootfs, strerror(errno));
  if (mount(NULL, s->rootfs, NULL, MS_REMOUNT | MS_BIND | MS_NODEV, NULL) < 0)
    return fail("remounting %s nodev: %s", s->rootfs, strerror(errno));
  return 0;
}

/* -------------------------------------------------------- overlay mount */

struct sbuf {
  char *p;
  size_t len, cap;
};

static int sb_add(struct sbuf *s, const char *t, size_t n) {
  if (s->len + n + 1 > s->cap) {
    size_t nc = s->cap ? s->cap : 1024;
    while (s->len + n + 1 > nc) nc *= 2;
    char *np = realloc(s->p, nc);
    if (!np) return fail("out of memory");
    s->p = np;
    s->cap = nc;
  }
  memcpy(s->p + s->len, t, n);
  s->len += n;
  s->p[s->len] = '\0';
  return 0;
}
static int sb_str(struct sbuf *s, const char *t) { return sb_add(s, t, strlen(t)); }

/* Overlay's option parser: backslash escapes ',' (all values) and ':' (lowerdir). */
static int sb_escaped(struct sbuf *s, const char *t) {
  for (; *t; t++) {
    if ((*t == ',' || *t == ':' || *t == '\\') && sb_add(s, "\\", 1) < 0) return -1;
    if (sb_add(s, t, 1) < 0) return -1;
  }
  return 0;
}

#define OVL_EXTRA_OPTS "index=off,redirect_dir=off,metacopy=off"

static int overlay_opts(struct run_spec *s, struct sbuf *o) {
  o->len = 0;
  if (sb_str(o, "lowerdir=") < 0) return -1;
  for (size_t i = 0; i < s->lowers.n; i++) {
    if (i && sb_str(o, ":") < 0) return -1;
    if (sb_escaped(o, s->lowers.v[i]) < 0) return -1;
  }
  if (sb_str(o, ",upperdir=") < 0 || sb_escaped(o, s->upper) < 0) return -1;
  if (sb_str(o, ",workdir=") < 0 || sb_escaped(o, s->work) < 0) return -1;
  return sb_str(o, "," OVL_EXTRA_OPTS);
}

/* New mount API with "lowerdir+" (Linux >= 6.8): no limit on the number of layers. */
static int overlay_newapi(struct run_spec *s, const char *target) {
  int fs = (int)syscall(SYS_fsopen, "overlay", MB_FSOPEN_CLOEXEC);
  if (fs < 0) return -1;
  int e = 0;
  for (size_t i = 0; i < s->lowers.n && !e; i++)
    if (syscall(SYS_fsconfig, fs, MB_FSCONFIG_SET_STRING, "lowerdir+", s->lowers.v[i], 0) < 0) e = errno;
  const char *kv[][2] = {{"upperdir", s->upper}, {"workdir", s->work}, {"index", "off"}, {"redirect_dir", "off"}, {"metacopy", "off"}};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !e; i++)
    if (syscall(SYS_fsconfig, fs, MB_FSCONFIG_SET_STRING, kv[i][0], kv[i][1], 0) < 0) e = errno;
  if (!e && syscall(SYS_fsconfig, fs, MB_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) e = errno;
  int mfd = -1;
  if (!e && (mfd = (int)syscall(SYS_fsmount, fs, MB_FSMOUNT_CLOEXEC, MB_MOUNT_ATTR_NODEV)) < 0) e = errno;
  if (!e && syscall(SYS_move_mount, mfd, "", AT_FDCWD, target, MB_MOVE_MOUNT_F_EMPTY_PATH) < 0) e = errno;
  if (mfd >= 0) close(mfd);
  close(fs);
  errno = e;
  return e ? -1 : 0;
}

#define MOUNT_DATA_MAX 4000 /* legacy mount(2) copies at most one page of options */

static int mount_overlay(struct run_spec *s) {
  struct sbuf o = {0};
  if (overlay_opts(s, &o) < 0) return -1;
  if (o.len < MOUNT_DATA_MAX) {
    if (mount("overlay", s->rootfs, "overlay", MS_NODEV, o.p) < 0)
      return fail("mounting overlay (%zu layers) on %s: %s", s->lowers.n, s->rootfs, strerror(errno));
    free(o.p);
    return 0;
  }
  /* Too long for mount(2): try the new API first. */
  if (overlay_newapi(s, s->rootfs) == 0) {
    free(o.p);
    return 0;
  }
  int newapi_err = errno;
  /* Then short symlinks to every directory in the (private) state dir, the trick Docker's overlay2
   * uses: overlay follows them when it resolves the options, relative to our working directory. */
  char ldir[PATH_MAX], name[32];
  snprintf(ldir, sizeof ldir, "%s/l", s->state);
  if (mkdir(ldir, 0700) < 0) return fail("mkdir %s: %s", ldir, strerror(errno));
  int lfd = open(ldir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (lfd < 0) return fail("open %s: %s", ldir, strerror(errno));
  o.len = 0;
  int bad = sb_str(&o, "lowerdir=");
  for (size_t i = 0; i < s->lowers.n && !bad; i++) {
    snprintf(name, sizeof name, "%zx", i);
    if (symlinkat(s->lowers.v[i], lfd, name) < 0) bad = fail("symlink %s/%s: %s", ldir, name, strerror(errno));
    else bad = (i && sb_str(&o, ":") < 0) || sb_str(&o, name) < 0;
  }
  if (!bad && (symlinkat(s->upper, lfd, "u") < 0 || symlinkat(s->work, lfd, "w") < 0))
    bad = fail("symlink in %s: %s", ldir, strerror(errno));
  close(lfd);
  if (bad || sb_str(&o, ",upperdir=u,workdir=w," OVL_EXTRA_OPTS) < 0) return -1;
  if (o.len >= MOUNT_DATA_MAX) {
    free(o.p);
    return fail("overlay options for %zu layers exceed the mount(2) limit and the new mount API failed: %s",
                s->lowers.n, strerror(newapi_err));
  }
  if (chdir(ldir) < 0) return fail("chdir %s: %s", ldir, strerror(errno));
  int r = mount("overlay", s->rootfs, "overlay", MS_NODEV, o.p);
  int e = errno;
  if (chdir("/") < 0) { /* nothing depends on the cwd */
  }
  free(o.p);
  if (r < 0) return fail("mounting overlay (%zu layers) on %s: %s", s->lowers.n, s->rootfs, strerror(e));
  return 0;
}

/* ------------------------------------------------- mount targets and stubs */

enum { TGT_SKIP = 0, TGT_DIRECT = 1, TGT_INSCOPE = 2 };

struct target {
  const char *path; /* relative to the rootfs */
  int isdir;
  int strict;       /* must be a real directory: a symlink is refused */
  const char *src;  /* bind source in the state dir (files only) */
  int how;
};

static struct target g_targets[] = {
    {"etc/hosts", 0, 0, "hosts", 0},
    {"etc/resolv.conf", 0, 0, "resolv.conf", 0},
    {"etc/hostname", 0, 0, "hostname", 0},
    {"proc", 1, 1, NULL, 0},
    {"sys", 1, 1, NULL, 0},
    {"dev", 1, 1, NULL, 0},
};
#define NTARGETS (sizeof g_targets / sizeof g_targets[0])

/* A file or directory the helper created in the rootfs only to mount onto (or a parent the overlay
 * copied up because of it). Removed from the upper dir after the step. */
struct stub {
  char rel[PATH_MAX];
  int isdir;
  int copied; /* existed in a lower layer, copied up to create a stub inside */
  dev_t dev;
  ino_t ino;
  mode_t mode;
  uid_t uid;
  gid_t gid;
};
static struct stub g_stubs[32];
static size_t g_nstubs;

/* lstat of rel below dirfd without following any symlink on the way. */
static int lookup_nofollow(int dirfd, const char *rel, struct stat *st, int *parent_out) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", rel);
  int cur = dup(dirfd);
  if (cur < 0) return -1;
  char *p = tmp, *slash;
  while ((slash = strchr(p, '/')) != NULL) {
    *slash = '\0';
    int n = openat(cur, p, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    close(cur);
    if (n < 0) {
      errno = e;
      return -1;
    }
    cur = n;
    p = slash + 1;
  }
  if (fstatat(cur, p, st, AT_SYMLINK_NOFOLLOW) < 0) {
    int e = errno;
    close(cur);
    errno = e;
    return -1;
  }
  if (parent_out) *parent_out = cur;
  else close(cur);
  return 0;
}

static int add_stub(int upperfd, const char *rel, int isdir, int copied, const struct stat *merged) {
  if (g_nstubs >= sizeof g_stubs / sizeof g_stubs[0]) return fail("too many mount stubs");
  struct stub *s = &g_stubs[g_nstubs];
  struct stat st;
  if (lookup_nofollow(upperfd, rel, &st, NULL) < 0)
    return fail("mount stub %s is not in the upper dir: %s", rel, strerror(errno));
  snprintf(s->rel, sizeof s->rel, "%s", rel);
  s->isdir = isdir;
  s->copied = copied;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->mode = merged ? merged->st_mode : st.st_mode;
  s->uid = merged ? merged->st_uid : st.st_uid;
  s->gid = merged ? merged->st_gid : st.st_gid;
  g_nstubs++;
  return 0;
}

static int openat2_inscope(int rootfd, const char *rel, int flags) {
  struct mb_open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                            .mode = 0,
                            .resolve = MB_RESOLVE_IN_ROOT | MB_RESOLVE_NO_MAGICLINKS | MB_RESOLVE_NO_XDEV};
  return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
}

/* Symlinked /etc/hosts and friends: mount onto the in-scope target if it is an existing regular file. */
static int check_inscope_file(int rootfd, struct target *t) {
  int fd = openat2_inscope(rootfd, t->path, O_PATH);
  struct stat st;
  t->how = TGT_SKIP;
  if (fd >= 0) {
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) t->how = TGT_INSCOPE;
    close(fd);
  }
  return 0;
}

/* Runs in the outer helper before the child starts: decides how each target is reached and creates
 * the missing ones (recorded as stubs). Nothing from the image has run yet. */
static int prepare_target(int rootfd, int upperfd, struct target *t) {
  char tmp[PATH_MAX], sofar[PATH_MAX] = "";
  struct {
    char rel[PATH_MAX];
    struct stat st;
  } pending[8];
  size_t npending = 0;
  int created = 0;
  snprintf(tmp, sizeof tmp, "%s", t->path);
  int cur = dup(rootfd);
  if (cur < 0) return fail("dup: %s", strerror(errno));
  char *p = tmp, *slash;
  while ((slash = strchr(p, '/')) != NULL) {
    *slash = '\0';
    if (sofar[0]) strcat(sofar, "/");
    strcat(sofar, p);
    int n = openat(cur, p, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    if (n < 0 && errno == ENOENT) {
      if (mkdirat(cur, p, 0755) < 0) {
        close(cur);
        return fail("creating mount stub /%s: %s", sofar, strerror(errno));
      }
      created = 1;
      if (add_stub(upperfd, sofar, 1, 0, NULL) < 0) {
        close(cur);
        return -1;
      }
      n = openat(cur, p, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    } else if (n >= 0 && npending < 8) {
      struct stat ust;
      if (lookup_nofollow(upperfd, sofar, &ust, NULL) < 0 && errno == ENOENT) {
        snprintf(pending[npending].rel, PATH_MAX, "%s", sofar);
        if (fstat(n, &pending[npending].st) == 0) npending++;
      }
    }
    if (n < 0) {
      int e = errno;
      close(cur);
      if (t->strict) return fail("/%s in the image is not a directory; refusing to mount /%s", sofar, t->path);
      if (e == ENOTDIR || e == ELOOP) return check_inscope_file(rootfd, t); /* symlinked or odd parent */
      return fail("resolving /%s: %s", sofar, strerror(e));
    }
    close(cur);
    cur = n;
    p = slash + 1;
  }
  if (sofar[0]) strcat(sofar, "/");
  strcat(sofar, p);
  struct stat st;
  if (fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    close(cur);
    if (t->isdir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode)) {
      t->how = TGT_DIRECT;
      return 0;
    }
    if (t->strict)
      return fail("/%s in the image is %s; refusing to mount onto it", t->path,
                  S_ISLNK(st.st_mode) ? "a symlink" : "not a directory");
    if (S_ISLNK(st.st_mode)) return check_inscope_file(rootfd, t);
    t->how = TGT_SKIP; /* e.g. /etc/hosts is a directory: leave it alone */
    return 0;
  }
  if (errno != ENOENT) {
    int e = errno;
    close(cur);
    return fail("lstat /%s: %s", t->path, strerror(e));
  }
  if (t->isdir) {
    if (mkdirat(cur, p, 0755) < 0) {
      int e = errno;
      close(cur);
      return fail("creating mount stub /%s: %s", t->path, strerror(e));
    }
  } else {
    int fd = openat(cur, p, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      int e = errno;
      close(cur);
      return fail("creating mount stub /%s: %s", t->path, strerror(e));
    }
    close(fd);
  }
  close(cur);
  created = 1;
  if (add_stub(upperfd, sofar, t->isdir, 0, NULL) < 0) return -1;
  t->how = TGT_DIRECT;
  if (created)
    for (size_t i = 0; i < npending; i++)
      if (add_stub(upperfd, pending[i].rel, 1, 1, &pending[i].st) < 0) return -1;
  return 0;
}

/* After the step, with the overlay unmounted: remove the stubs from the upper dir. The upper dir was
 * written by the step, so everything is re-checked without following symlinks. */
static int remove_stubs(const char *upper) {
  int upperfd = open(upper, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (upperfd < 0) return fail("open %s: %s", upper, strerror(errno));
  int rc = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = g_nstubs; i-- > 0;) {
      struct stub *s = &g_stubs[i];
      if (s->copied != pass) continue;
      struct stat st;
      int pfd = -1;
      if (lookup_nofollow(upperfd, s->rel, &st, &pfd) < 0) continue; /* gone or moved */
      const char *base = strrchr(s->rel, '/');
      base = base ? base + 1 : s->rel;
      if (st.st_dev == s->dev && st.st_ino == s->ino) {
        if (!s->isdir) {
          if (S_ISREG(st.st_mode) && st.st_size == 0 && unlinkat(pfd, base, 0) < 0 && errno != ENOENT)
            rc = fail("removing mount stub %s/%s: %s", upper, s->rel, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
          int keep = 0;
          if (s->copied) {
            /* a parent copied up for a stub: drop it only if the step left it untouched */
            if (st.st_mode != s->mode || st.st_uid != s->uid || st.st_gid != s->gid) keep = 1;
            int dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (dfd < 0 || is_opaque(dfd)) keep = 1;
            if (dfd >= 0) close(dfd);
          }
          if (!keep && unlinkat(pfd, base, AT_REMOVEDIR) < 0 && errno != ENOTEMPTY && errno != EEXIST &&
              errno != ENOENT)
            rc = fail("removing mount stub %s/%s: %s", upper, s->rel, strerror(errno));
        }
      }
      close(pfd);
    }
  }
  close(upperfd);
  return rc;
}

/* ------------------------------------------------------- the child (pid 1) */

static int g_errpipe = -1, g_syncpipe = -1, g_gopipe = -1;

static void __attribute__((noreturn)) child_fail(void) {
  if (!g_err[0]) fail("sandbox setup failed");
  write_all(g_errpipe, g_err, strlen(g_err));
  _exit(SETUP_EXIT);
}

static void check_parent_alive(void) {
  struct pollfd pfd = {.fd = g_syncpipe, .events = POLLIN};
  if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR))) _exit(SETUP_EXIT);
}

static int fs_magic_is(int fd, long magic) {
  struct statfs sf;
  return fstatfs(fd, &sf) == 0 && (long)sf.f_type == magic;
}

/* With a plain (bind-mounted) root, targets must be on the root's own filesystem (no overlay magic). */
static int g_plain_root;
static dev_t g_root_dev;

static int on_rootfs(int fd) {
  struct stat st;
  if (!g_plain_root) return fs_magic_is(fd, OVERLAYFS_MAGIC);
  return fstat(fd, &st) == 0 && st.st_dev == g_root_dev;
}

/* Re-resolves a prepared target inside the rootfs (in the child's mount namespace). */
static int open_target(int rootfd, struct target *t) {
  char tmp[PATH_MAX];
  int fd;
  if (t->how == TGT_INSCOPE) {
    fd = openat2_inscope(rootfd, t->path, O_PATH);
    if (fd < 0) return fail("resolving /%s in the image: %s", t->path, strerror(errno));
  } else {
    snprintf(tmp, sizeof tmp, "%s", t->path);
    int cur = dup(rootfd);
    char *p = tmp, *slash;
    while ((slash = strchr(p, '/')) != NULL) {
      *slash = '\0';
      int n = openat(cur, p, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
      close(cur);
      if (n < 0) return fail("resolving /%s: %s", t->path, strerror(errno));
      cur = n;
      p = slash + 1;
    }
    fd = openat(cur, p, O_PATH | O_NOFOLLOW | O_CLOEXEC | (t->isdir ? O_DIRECTORY : 0));
    close(cur);
    if (fd < 0) return fail("resolving /%s: %s", t->path, strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || (t->isdir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) || !on_rootfs(fd)) {
    close(fd);
    return fail("mount target /%s is not a %s inside the rootfs", t->path, t->isdir ? "directory" : "file");
  }
  return fd;
}

static int mount_at(const char *src, int fd, const char *type, unsigned long flags, const char *data, const char *what) {
  char p[64];
  if (mount(src, fdpath(fd, p, sizeof p), type, flags, data) < 0) return fail("mounting %s: %s", what, strerror(errno));
  return 0;
}

/* Bind-mounts parentfd/name onto itself read-only (no-op when it does not exist). */
static int ro_bind(int parentfd, const char *name, const char *what) {
  char p[64], q[64];
  int fd = openat(parentfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : fail("open %s: %s", what, strerror(errno));
  if (mount(fdpath(fd, p, sizeof p), p, NULL, MS_BIND | MS_REC, NULL) < 0) {
    close(fd);
    return fail("bind %s: %s", what, strerror(errno));
  }
  close(fd);
  fd = openat(parentfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC); /* now the top of the new bind mount */
  if (fd < 0) return fail("open %s: %s", what, strerror(errno));
  int r = mount(NULL, fdpath(fd, q, sizeof q), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  close(fd);
  return r < 0 ? fail("remount %s read-only: %s", what, strerror(errno)) : 0;
}

/* Hides parentfd/name: /dev/null over files, an empty read-only tmpfs over directories. */
static int mask_path(int parentfd, const char *name, int devnull, const char *what) {
  char p[64];
  int fd = openat(parentfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : fail("open %s: %s", what, strerror(errno));
  struct stat st;
  int r = 0;
  if (fstat(fd, &st) < 0) r = fail("stat %s: %s", what, strerror(errno));
  else if (S_ISDIR(st.st_mode)) r = mount_at("tmpfs", fd, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0", what);
  else if (mount(fdpath(devnull, p, sizeof p), fdpath(fd, p + 32, 32), NULL, MS_BIND, NULL) < 0)
    r = fail("masking %s: %s", what, strerror(errno));
  close(fd);
  return r;
}

static const char *g_masked_proc[] = {"asound", "acpi", "interrupts", "kcore", "keys", "latency_stats", "timer_list",
                                      "timer_stats", "sched_debug", "scsi", NULL};
static const char *g_ro_proc[] = {"bus", "fs", "irq", "sys", "sysrq-trigger", NULL};

static int setup_proc(int rootfd, struct target *t, int devnull) {
  int fd = open_target(rootfd, t);
  if (fd < 0) return -1;
  int r = mount_at("proc", fd, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "/proc");
  close(fd);
  if (r < 0) return -1;
  int pfd = openat(rootfd, "proc", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0 || !fs_magic_is(pfd, PROCFS_MAGIC)) return fail("reopening /proc after mounting it failed");
  char what[64];
  for (int i = 0; g_masked_proc[i]; i++) {
    snprintf(what, sizeof what, "/proc/%s", g_masked_proc[i]);
    if (mask_path(pfd, g_masked_proc[i], devnull, what) < 0) return -1;
  }
  for (int i = 0; g_ro_proc[i]; i++) {
    snprintf(what, sizeof what, "/proc/%s", g_ro_proc[i]);
    if (ro_bind(pfd, g_ro_proc[i], what) < 0) return -1;
  }
  close(pfd);
  return 0;
}

static int setup_sys(int rootfd, struct target *t, int devnull) {
  int fd = open_target(rootfd, t);
  if (fd < 0) return -1;
  int r = mount_at("sysfs", fd, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "/sys");
  close(fd);
  if (r < 0) return -1;
  int sfd = openat(rootfd, "sys", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
  if (sfd < 0 || !fs_magic_is(sfd, SYSFS_MAGIC_)) return fail("reopening /sys after mounting it failed");
  if (mask_path(sfd, "firmware", devnull, "/sys/firmware") < 0) return -1;
  if (mask_path(sfd, "devices/virtual/powercap", devnull, "/sys/devices/virtual/powercap") < 0) return -1;
  close(sfd);
  return 0;
}

static const struct {
  const char *name;
  unsigned maj, min;
  int required;
} g_devices[] = {
    {"null", 1, 3, 1}, {"zero", 1, 5, 1}, {"full", 1, 7, 0}, {"random", 1, 8, 1}, {"urandom", 1, 9, 1}, {"tty", 5, 0, 0},
};

static int setup_dev(int rootfd, struct target *t) {
  int fd = open_target(rootfd, t);
  if (fd < 0) return -1;
  /* nodev: a device node made with mknod inside the step cannot be opened; only the bind mounts below can. */
  int r = mount_at("tmpfs", fd, "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=755,size=65536k", "/dev");
  close(fd);
  if (r < 0) return -1;
  int dfd = openat(rootfd, "dev", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || !fs_magic_is(dfd, TMPFS_MAGIC_)) return fail("reopening /dev after mounting it failed");
  char src[64], what[64];
  for (size_t i = 0; i < sizeof g_devices / sizeof g_devices[0]; i++) {
    snprintf(src, sizeof src, "/dev/%s", g_devices[i].name);
    int sfd = open(src, O_PATH | O_NOFOLLOW | O_CLOEXEC); /* the host's device, before pivot_root */
    struct stat st;
    if (sfd < 0 || fstat(sfd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(g_devices[i].maj, g_devices[i].min)) {
      if (sfd >= 0) close(sfd);
      if (g_devices[i].required) return fail("host %s is missing or not the expected device", src);
      continue;
    }
    int tfd = openat(dfd, g_devices[i].name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (tfd < 0) return fail("creating %s: %s", src, strerror(errno));
    close(tfd);
    tfd = openat(dfd, g_devices[i].name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    char sp[64];
    snprintf(what, sizeof what, "%s", src);
    if (tfd < 0 || mount_at(fdpath(sfd, sp, sizeof sp), tfd, NULL, MS_BIND, NULL, what) < 0) return fail("bind %s: %s", src, strerror(errno));
    close(tfd);
    close(sfd);
  }
  struct {
    const char *name, *type, *data;
    unsigned long flags;
    int required;
  } subs[] = {
      {"pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5", MS_NOSUID | MS_NOEXEC, 1},
      {"shm", "tmpfs", "mode=1777,size=65536k", MS_NOSUID | MS_NODEV | MS_NOEXEC, 1},
      {"mqueue", "mqueue", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC, 0},
  };
  for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
    snprintf(what, sizeof what, "/dev/%s", subs[i].name);
    if (mkdirat(dfd, subs[i].name, 0755) < 0) return fail("mkdir %s: %s", what, strerror(errno));
    int sfd = openat(dfd, subs[i].name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0) return fail("open %s: %s", what, strerror(errno));
    if (mount_at(subs[i].type, sfd, subs[i].type, subs[i].flags, subs[i].data, what) < 0 && subs[i].required) return -1;
    g_err[0] = '\0'; /* optional mount failures are not errors */
    close(sfd);
  }
  const char *links[][2] = {{"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
                            {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}};
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    if (symlinkat(links[i][1], dfd, links[i][0]) < 0) return fail("symlink /dev/%s: %s", links[i][0], strerror(errno));
  close(dfd);
  return 0;
}

static int if_up(int sock, const char *ifname) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return fail("SIOCGIFFLAGS %s: %s", ifname, strerror(errno));
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) return fail("bringing up %s: %s", ifname, strerror(errno));
  return 0;
}

static int bring_up_lo(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket: %s", strerror(errno));
  int r = if_up(s, "lo");
  close(s);
  return r;
}

/* ------------------------------------------------------ bridge networking */

/* What the caller sends on fd 3 once it has moved the veth end into our namespace. */
struct netcfg {
  struct in_addr addr, mask, gw;
  int have_gw;
  char ifname[IFNAMSIZ];
};

static volatile sig_atomic_t g_child = 0, g_killreq = 0, g_forward = 0;

static int read_netcfg(int fd, struct netcfg *c) {
  struct buf b = {0};
  size_t cap = 4096;
  b.data = malloc(cap + 1);
  if (!b.data) return fail("out of memory");
  for (;;) {
    if (g_killreq) return fail("interrupted while waiting for the network");
    if (b.len == cap) return fail("network configuration too large");
    ssize_t r = read(fd, b.data + b.len, cap - b.len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail("reading the network configuration: %s", strerror(errno));
    if (r == 0) break;
    b.len += (size_t)r;
  }
  b.data[b.len] = '\0';
  memset(c, 0, sizeof *c);
  snprintf(c->ifname, sizeof c->ifname, "eth0");
  size_t pos = 0;
  int trunc = 0, have_addr = 0;
  unsigned long prefix = 33;
  const char *k;
  while ((k = next_field(&b, &pos, &trunc)) != NULL) {
    const char *v = next_field(&b, &pos, &trunc);
    if (!v) break;
    if (!strcmp(k, "abort")) return fail("%s", v);
    if (!strcmp(k, "addr")) {
      if (inet_pton(AF_INET, v, &c->addr) != 1) return fail("bad address %s", v);
      have_addr = 1;
    } else if (!strcmp(k, "prefix")) {
      if (parse_ulong(v, 32, &prefix, 10) < 0) return fail("bad prefix length %s", v);
    } else if (!strcmp(k, "gw")) {
      if (inet_pton(AF_INET, v, &c->gw) != 1) return fail("bad gateway %s", v);
      c->have_gw = 1;
    } else if (!strcmp(k, "ifname")) {
      if (!*v || strlen(v) >= IFNAMSIZ || strchr(v, '/')) return fail("bad interface name %s", v);
      snprintf(c->ifname, sizeof c->ifname, "%s", v);
    } else return fail("unknown network key %s", k);
  }
  if (trunc) return fail("malformed network configuration");
  if (!have_addr || prefix > 32) return fail("the caller did not set up the network");
  c->mask.s_addr = prefix ? htonl(~0U << (32 - prefix)) : 0;
  return 0;
}

static int set_if_addr(int sock, const char *ifname, unsigned long req, struct in_addr a, const char *what) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = a};
  memcpy(&ifr.ifr_addr, &sin, sizeof sin);
  if (ioctl(sock, req, &ifr) < 0) return fail("setting the %s of %s: %s", what, ifname, strerror(errno));
  return 0;
}

/* Address, link up, lo up and the default route: in the helper, still holding every capability. */
static int configure_net(const struct netcfg *c) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket: %s", strerror(errno));
  int r = -1;
  if (set_if_addr(s, c->ifname, SIOCSIFADDR, c->addr, "address") < 0) goto out;
  if (set_if_addr(s, c->ifname, SIOCSIFNETMASK, c->mask, "netmask") < 0) goto out;
  if (if_up(s, c->ifname) < 0 || if_up(s, "lo") < 0) goto out;
  if (c->have_gw) {
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    struct sockaddr_in any = {.sin_family = AF_INET}, gw = {.sin_family = AF_INET, .sin_addr = c->gw};
    memcpy(&rt.rt_dst, &any, sizeof any);
    memcpy(&rt.rt_genmask, &any, sizeof any);
    memcpy(&rt.rt_gateway, &gw, sizeof gw);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    if (ioctl(s, SIOCADDRT, &rt) < 0) {
      fail("adding the default route: %s", strerror(errno));
      goto out;
    }
  }
  r = 0;
out:
  close(s);
  return r;
}

/* Puts the command in the caller's cgroups (one cgroup.procs per hierarchy) before it does anything. */
static int join_cgroups(struct run_spec *s) {
  for (size_t i = 0; i < s->cgroups.n; i++) {
    int fd = open(s->cgroups.v[i], O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return fail("open %s: %s", s->cgroups.v[i], strerror(errno));
    ssize_t w = write(fd, "0", 1);
    int e = errno;
    close(fd);
    if (w != 1) return fail("joining cgroup %s: %s", s->cgroups.v[i], strerror(e));
  }
  return 0;
}

static int cap_kept(int cap) {
  static const int keep[] = {CAP_CHOWN,  CAP_DAC_OVERRIDE,     CAP_FOWNER,  CAP_FSETID,      CAP_KILL,
                             CAP_SETGID, CAP_SETUID,           CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_RAW,
                             CAP_SYS_CHROOT, CAP_MKNOD,        CAP_AUDIT_WRITE, CAP_SETFCAP};
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
    if (keep[i] == cap) return 1;
  return 0;
}

static int drop_privileges(struct run_spec *s) {
  uint64_t keepmask = 0;
  for (int cap = 0; cap < 64; cap++) {
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break; /* past the last capability */
    if (cap_kept(cap)) keepmask |= (uint64_t)1 << cap;
    else if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) return fail("dropping capability %d: %s", cap, strerror(errno));
  }
  if (setgroups(s->ngroups, s->groups) < 0) return fail("setgroups: %s", strerror(errno));
  if (setresgid(s->gid, s->gid, s->gid) < 0) return fail("setgid %u: %s", (unsigned)s->gid, strerror(errno));
  if (setresuid(s->uid, s->uid, s->uid) < 0) return fail("setuid %u: %s", (unsigned)s->uid, strerror(errno));
  /* root keeps Docker's default set; other users have none left after setuid */
  uint64_t want = s->uid == 0 ? keepmask : 0;
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  data[0].effective = data[0].permitted = (uint32_t)want;
  data[1].effective = data[1].permitted = (uint32_t)(want >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) return fail("capset: %s", strerror(errno));
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return fail("clearing ambient capabilities: %s", strerror(errno));
  return 0;
}

static int mkdir_p(const char *path) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return fail("working directory path too long");
  for (char *p = tmp + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return fail("creating working directory %s: %s", path, strerror(errno));
      *p = c;
      if (!c) break;
    }
  }
  return 0;
}

static void lower_first(char *s) {
  if (s[0]) s[0] = (char)tolower((unsigned char)s[0]);
}

static void __attribute__((noreturn)) exec_command(struct run_spec *s) {
  char **argv = (char **)s->args.v;
  char **envp = (char **)(s->env.v ? s->env.v : (const char *[]){NULL});
  const char *file = argv[0];
  char msg[PATH_MAX + 128], es[128];
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    int e = errno;
    snprintf(es, sizeof es, "%s", strerror(e));
    lower_first(es);
    int n = snprintf(msg, sizeof msg, "exec %s: %s\n", file, es);
    write_all(2, msg, (size_t)n);
    _exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
  }
  const char *path = NULL;
  for (size_t i = 0; i < s->env.n; i++)
    if (!strncmp(s->env.v[i], "PATH=", 5)) path = s->env.v[i] + 5; /* last one wins */
  if (!path) path = DEFAULT_PATH;
  int eacces = 0;
  if (file[0]) {
    const char *p = path;
    for (;;) {
      const char *colon = strchr(p, ':');
      size_t dl = colon ? (size_t)(colon - p) : strlen(p);
      char full[PATH_MAX];
      if (dl == 0) snprintf(full, sizeof full, "%s", file);
      else snprintf(full, sizeof full, "%.*s/%s", (int)dl, p, file);
      execve(full, argv, envp);
      int e = errno;
      if (e == EACCES) eacces = 1;
      else if (e != ENOENT && e != ENOTDIR && e != ESTALE && e != ENODEV && e != ETIMEDOUT && e != ENAMETOOLONG) {
        snprintf(es, sizeof es, "%s", strerror(e));
        lower_first(es);
        int n = snprintf(msg, sizeof msg, "exec %s: %s\n", full, es);
        write_all(2, msg, (size_t)n);
        _exit(126);
      }
      if (!colon) break;
      p = colon + 1;
    }
  }
  int n = snprintf(msg, sizeof msg, eacces ? "exec: \"%s\": permission denied\n" : "exec: \"%s\": executable file not found in $PATH\n", file);
  write_all(2, msg, (size_t)n);
  _exit(eacces ? 126 : 127);
}

static void __attribute__((noreturn)) child_main(struct run_spec *s) {
  /* default signal handling and an empty mask for the command */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("PR_SET_PDEATHSIG: %s", strerror(errno)), child_fail();
  check_parent_alive();
  if (join_cgroups(s) < 0) child_fail();
  if (setsid() < 0) fail("setsid: %s", strerror(errno)), child_fail();

  /* our own mount namespace (a copy of the helper's private one), so pivot_root only moves us */
  if (unshare(CLONE_NEWNS) < 0) fail("unshare mount namespace: %s", strerror(errno)), child_fail();
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("making / private: %s", strerror(errno)), child_fail();

  int rootfd = open(s->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct stat rst;
  if (rootfd >= 0 && s->rootfsdir && fstat(rootfd, &rst) == 0) {
    g_plain_root = 1;
    g_root_dev = rst.st_dev;
  }
  if (rootfd < 0 || (!s->rootfsdir && !fs_magic_is(rootfd, OVERLAYFS_MAGIC))) fail("rootfs %s is not the overlay mount", s->rootfs), child_fail();
  int devnull = open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (devnull < 0 || fstat(devnull, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
    fail("host /dev/null is not the null device"), child_fail();

  /* /etc files first: their in-scope resolution must not cross into the mounts made below */
  for (size_t i = 0; i < NTARGETS; i++) {
    struct target *t = &g_targets[i];
    if (!t->src || t->how == TGT_SKIP) continue;
    char src[PATH_MAX], what[PATH_MAX + 8];
    snprintf(src, sizeof src, "%s/%s", s->state, t->src);
    snprintf(what, sizeof what, "/%s", t->path);
    int fd = open_target(rootfd, t);
    if (fd < 0 || mount_at(src, fd, NULL, MS_BIND, NULL, what) < 0) child_fail();
    close(fd);
  }
  if (setup_proc(rootfd, &g_targets[3], devnull) < 0) child_fail();
  if (setup_sys(rootfd, &g_targets[4], devnull) < 0) child_fail();
  if (setup_dev(rootfd, &g_targets[5]) < 0) child_fail();

  if (sethostname(s->hostname, strlen(s->hostname)) < 0) fail("sethostname: %s", strerror(errno)), child_fail();
  if (s->net_mode == NET_NONE && bring_up_lo() < 0) child_fail();

  if (fchdir(rootfd) < 0) fail("chdir rootfs: %s", strerror(errno)), child_fail();
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root: %s", strerror(errno)), child_fail();
  if (umount2(".", MNT_DETACH) < 0) fail("detaching the old root: %s", strerror(errno)), child_fail();
  if (chdir("/") < 0) fail("chdir /: %s", strerror(errno)), child_fail();
  close(rootfd);
  close(devnull);

  umask(0);
  if (mkdir_p(s->cwd) < 0) child_fail();
  if (chdir(s->cwd) < 0) fail("chdir to working directory %s: %s", s->cwd, strerror(errno)), child_fail();
  if (drop_privileges(s) < 0) child_fail();
  /* credential changes clear the parent-death signal: set it again, then re-check the parent */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("PR_SET_PDEATHSIG: %s", strerror(errno)), child_fail();
  check_parent_alive();
  umask(022);

  /* nothing but 0, 1, 2 survives exec */
  if (syscall(SYS_close_range, 3U, ~0U, MB_CLOSE_RANGE_CLOEXEC) < 0) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) fail("listing open descriptors: %s", strerror(errno)), child_fail();
    struct dirent *e;
    int self = dirfd(d);
    while ((e = readdir(d)) != NULL) {
      int fd = atoi(e->d_name);
      if (fd > 2 && fd != self) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    closedir(d);
  }
  /* the sandbox is ready; the helper says when its network is (EOF: it gave up, and says why) */
  char go;
  ssize_t r;
  while ((r = read(g_gopipe, &go, 1)) < 0 && errno == EINTR) {
  }
  if (r != 1) _exit(SETUP_EXIT);
  exec_command(s);
}

/* --------------------------------------------------------- outer helper */

static void on_signal(int sig) {
  /* run: the command's own handlers decide; SIGUSR1 (and anything before the fork) kills */
  if (g_forward && g_child > 0 && sig != SIGUSR1) {
    kill(g_child, sig);
    return;
  }
  g_killreq = 1;
  if (g_child > 0) kill(g_child, SIGKILL);
}

static void report(const char *nonce, const char *kind, const char *payload) {
  struct sbuf o = {0};
  sb_add(&o, "\0MBUILD-HELPER:", 15);
  sb_str(&o, nonce ? nonce : "");
  sb_str(&o, ":");
  sb_str(&o, kind);
  sb_str(&o, ":");
  for (const char *c = payload; *c; c++) sb_add(&o, *c == '\n' ? " " : c, 1);
  sb_str(&o, "\n");
  if (o.p) write_all(2, o.p, o.len);
}

/* The upper dir's opaque dirs as one "opaque:<hex>" record; nothing when the walk fails (the
 * caller then runs find-opaque itself). Called after the command and everything it started ended. */
static void report_opaque(const struct run_spec *s) {
  raise_nofile();
  int fd = open(s->upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  g_opaque_collect = 1;
  g_opaque_len = 0;
  g_rel[0] = '\0';
  int rc = walk_opaque(fd, 0);
  int ok = rc == 0 && g_opaque_collect > 0;
  g_opaque_collect = 0;
  g_err[0] = '\0';
  if (!ok) return;
  static const char digits[] = "0123456789abcdef";
  char *hex = malloc(g_opaque_len * 2 + 1);
  if (!hex) return;
  for (size_t i = 0; i < g_opaque_len; i++) {
    hex[2 * i] = digits[(unsigned char)g_opaque_p[i] >> 4];
    hex[2 * i + 1] = digits[(unsigned char)g_opaque_p[i] & 15];
  }
  hex[g_opaque_len * 2] = '\0';
  report(s->nonce, "opaque", hex);
  free(hex);
}

static int run_main(void) {
  struct buf b;
  struct run_spec s;
  memset(&s, 0, sizeof s);
  if (read_all(0, &b, (size_t)64 << 20) < 0 || parse_run_spec(&b, &s) < 0) {
    report(s.nonce, "error", g_err);
    return SETUP_EXIT;
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
    fail("PR_SET_PDEATHSIG: %s", strerror(errno));
    report(s.nonce, "error", g_err);
    return SETUP_EXIT;
  }
  if (s.ppid > 0 && getppid() != (pid_t)s.ppid) return SETUP_EXIT; /* the caller is already gone */

  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0) {
    fail("opening /dev/null: %s", strerror(errno));
    report(s.nonce, "error", g_err);
    return SETUP_EXIT;
  }
  close(null);
  umask(0);

  /* A private mount namespace: the overlay and everything below it vanish with this process. */
  int status = 0, have_status = 0;
  char childerr[sizeof g_err] = "";
  int rootfd = -1, upperfd = -1;
  pid_t pid = -1;
  if (unshare(CLONE_NEWNS) < 0) {
    fail("unshare mount namespace: %s", strerror(errno));
    goto out;
  }
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
    fail("making / private: %s", strerror(errno));
    goto out;
  }
  if ((s.rootfsdir ? mount_rootfsdir(&s) : mount_overlay(&s)) < 0) goto out;
  rootfd = open(s.rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  /* stubs are recorded (and later removed) in the dir that keeps the changes */
  upperfd = open(s.rootfsdir ? s.rootfsdir : s.upper, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0 || upperfd < 0) {
    fail("opening rootfs/upper dir: %s", strerror(errno));
    goto cleanup;
  }
  for (size_t i = 0; i < NTARGETS; i++)
    if (prepare_target(rootfd, upperfd, &g_targets[i]) < 0) goto cleanup;
  close(rootfd);
  close(upperfd);
  rootfd = upperfd = -1;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  g_forward = s.forward_signals;

  if (s.net_mode == NET_JOIN) {
    int nfd = open(s.netns, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
      fail("joining the network namespace %s: %s", s.netns, strerror(errno));
      if (nfd >= 0) close(nfd);
      goto cleanup;
    }
    close(nfd);
  }
  int newnet = s.net_mode == NET_NONE || s.net_mode == NET_BRIDGE ? CLONE_NEWNET : 0;
  if (unshare(CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | newnet) < 0) {
    fail("unshare namespaces: %s", strerror(errno));
    goto cleanup;
  }
  /* the caller may need our network namespace (/proc/<pid>/ns/net): a veth for bridge, a name for run */
  char pidnum[32];
  snprintf(pidnum, sizeof pidnum, "%ld", (long)getpid());
  report(s.nonce, "netns", pidnum);
  int errp[2], syncp[2], gop[2];
  if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(syncp, O_CLOEXEC) < 0 || pipe2(gop, O_CLOEXEC) < 0) {
    fail("pipe: %s", strerror(errno));
    goto cleanup;
  }

  /* The child sets itself up (cgroups, mounts, pivot_root: ~20 ms, most of it the first cgroup v1
   * migration waiting for RCU) while the caller plugs in the network; it execs on our word. */
  pid = fork();
  if (pid < 0) {
    fail("fork: %s", strerror(errno));
    goto cleanup;
  }
  if (pid == 0) {
    close(errp[0]);
    close(syncp[1]);
    close(gop[1]);
    g_errpipe = errp[1];
    g_syncpipe = syncp[0];
    g_gopipe = gop[0];
    child_main(&s);
  }
  g_child = pid;
  close(errp[1]);
  close(syncp[0]);
  close(gop[0]);
  int netok = 1;
  if (s.net_mode == NET_BRIDGE) {
    struct netcfg nc;
    int r = read_netcfg(3, &nc);
    close(3);
    if (r < 0 || configure_net(&nc) < 0) netok = 0;
  }
  if (netok && g_killreq) {
    fail("interrupted");
    netok = 0;
  }
  if (netok) write_all(gop[1], "g", 1);
  else kill(pid, SIGKILL);
  close(gop[1]);
  /* the error pipe closes at exec (or when the child dies); data means setup failed */
  size_t got = 0;
  for (;;) {
    ssize_t r = read(errp[0], childerr + got, sizeof childerr - 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
    if (got == sizeof childerr - 1) break;
  }
  childerr[got] = '\0';
  close(errp[0]);
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      fail("waitpid: %s", strerror(errno));
      break;
    }
  }
  if (!g_err[0]) have_status = 1;
  close(syncp[1]);

cleanup:
  if (rootfd >= 0) close(rootfd);
  if (upperfd >= 0) close(upperfd);
  if (umount2(s.rootfs, 0) < 0 && umount2(s.rootfs, MNT_DETACH) < 0)
    fail("unmounting the rootfs %s: %s", s.rootfs, strerror(errno));
  if (remove_stubs(s.rootfsdir ? s.rootfsdir : s.upper) < 0 && !g_err[0]) fail("removing mount stubs failed");
out:
  if (childerr[0]) {
    report(s.nonce, "error", childerr);
    return SETUP_EXIT;
  }
  if (g_err[0] || !have_status) {
    report(s.nonce, "error", g_err[0] ? g_err : "sandbox failed");
    return SETUP_EXIT;
  }
  if (s.report_opaque && !s.rootfsdir) report_opaque(&s);
  char num[32];
  if (WIFSIGNALED(status)) {
    snprintf(num, sizeof num, "%d", WTERMSIG(status));
    report(s.nonce, "signal", num);
    return 128 + WTERMSIG(status);
  }
  snprintf(num, sizeof num, "%d", WEXITSTATUS(status));
  report(s.nonce, "exit", num);
  return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "fsops")) return run_fsops();
  if (argc == 3 && !strcmp(argv[1], "find-opaque")) return run_find_opaque(argv[2]);
  if (argc == 2 && !strcmp(argv[1], "run")) return run_main();
  dprintf(2, "usage: mbuild-helper fsops | find-opaque ROOT | run   (input on stdin)\n");
  return 2;
}
