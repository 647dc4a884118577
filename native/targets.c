/* mbuild-helper: the mount targets in the rootfs (/etc files, /proc, /sys, /dev) and the stubs made for them. */
#include "helper.h"

/* ------------------------------------------------- mount targets and stubs */

struct target g_targets[NTARGETS] = {
    {"etc/hosts", 0, 0, "hosts", 0},
    {"etc/resolv.conf", 0, 0, "resolv.conf", 0},
    {"etc/hostname", 0, 0, "hostname", 0},
    {"proc", 1, 1, NULL, 0},
    {"sys", 1, 1, NULL, 0},
    {"dev", 1, 1, NULL, 0},
};
_Static_assert(sizeof g_targets / sizeof g_targets[0] == NTARGETS, "NTARGETS");

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
int prepare_target(int rootfd, int upperfd, struct target *t) {
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
int remove_stubs(const char *upper) {
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


int g_plain_root;
dev_t g_root_dev;

static int on_rootfs(int fd) {
  struct stat st;
  if (!g_plain_root) return fs_magic_is(fd, OVERLAYFS_MAGIC);
  return fstat(fd, &st) == 0 && st.st_dev == g_root_dev;
}

/* Re-resolves a prepared target inside the rootfs (in the child's mount namespace). */
int open_target(int rootfd, struct target *t) {
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
