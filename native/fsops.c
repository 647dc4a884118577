/* mbuild-helper: `fsops` (whiteouts, opaque dirs, device nodes) and `find-opaque`. */
#include "helper.h"

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

int run_fsops(void) {
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
      if (mknod(path, fmt | (mode_t)mode, dev) < 0) {
        /* a user namespace cannot make device nodes: they are left out of the unpacked layer, as
         * containerd's applier does rootless (the layer blob itself is not changed) */
        if (errno == EPERM && fmt != S_IFIFO && in_user_namespace()) continue;
        return fsop_error(op, path, errno);
      }
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
void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int is_opaque(int fd) {
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

int run_find_opaque(const char *root) {
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

/* Collects the opaque dirs below dirfd (owned by this call) into a buffer, as find-opaque lists them,
 * for run's "opaque" record. 0 with *p and *n set, or -1 when the walk fails or the buffer cannot grow. */
int collect_opaque(int dirfd, const char **p, size_t *n) {
  g_opaque_collect = 1;
  g_opaque_len = 0;
  g_rel[0] = '\0';
  int rc = walk_opaque(dirfd, 0);
  int ok = rc == 0 && g_opaque_collect > 0;
  g_opaque_collect = 0;
  g_err[0] = '\0';
  if (!ok) return -1;
  *p = g_opaque_p;
  *n = g_opaque_len;
  return 0;
}
