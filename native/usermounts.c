/*
 * mbuild-helper: RUN --mount (and `run --mount`) mounts: binds, scratch overlays over a bind source
 * (rw binds whose writes are thrown away) and tmpfs.
 *
 * Spec fields, one mount per "mount" key (the target, relative to the rootfs), followed by its kind:
 *   mount TARGET  mount.bind SRC  mount.ro 0|1
 *   mount TARGET  mount.overlay SRC  mount.upper DIR  mount.work DIR
 *   mount TARGET  mount.tmpfs SIZE (bytes, 0 = the kernel's default)  [mount.mode OCTAL]
 *
 * Targets are prepared by the outer helper before anything from the image runs, as docker 20.10's
 * BuildKit leaves them: missing directories (the target and its parents) are created 0755 root and
 * stay in the layer; a missing file target (a secret, a socket, a bound file) is created empty and
 * removed after the step. A target below an earlier mount's target, or in /dev, /proc or /sys, is
 * made inside that mount, in the child, as runc does (so it fails on a read-only one, as it does
 * with BuildKit).
 */
#include "helper.h"

enum { UM_BIND = 1, UM_OVERLAY = 2, UM_TMPFS = 3 };

struct user_mount {
  const char *target; /* relative to the rootfs */
  int kind;
  const char *src, *upper, *work;
  int ro;
  unsigned long size;
  long mode; /* tmpfs: mode of its root, -1 = the kernel's default */
  int isdir;
  int nested; /* below an earlier mount's target: made in the child */
};

#define MAX_USER_MOUNTS 64
static struct user_mount g_um[MAX_USER_MOUNTS];
static size_t g_num;

/* file stubs made for targets, removed from the upper dir after the step */
static struct {
  char rel[PATH_MAX];
  dev_t dev;
  ino_t ino;
} g_ustubs[MAX_USER_MOUNTS];
static size_t g_nustubs;

int parse_user_mount_field(const char *k, const char *v) {
  struct user_mount *m = g_num ? &g_um[g_num - 1] : NULL;
  unsigned long n;
  if (!strcmp(k, "mount")) {
    if (g_num == MAX_USER_MOUNTS) return fail("too many mounts (at most %d)", MAX_USER_MOUNTS);
    if (!v[0] || v[0] == '/' || strstr(v, "..")) return fail("spec: bad mount target %s", v);
    g_um[g_num++] = (struct user_mount){.target = v, .mode = -1};
    return 0;
  }
  if (!m) return fail("spec: %s before mount", k);
  if (!strcmp(k, "mount.bind") || !strcmp(k, "mount.overlay")) {
    if (v[0] != '/') return fail("spec: relative mount source %s", v);
    m->kind = k[6] == 'b' ? UM_BIND : UM_OVERLAY;
    m->src = v;
  } else if (!strcmp(k, "mount.upper")) m->upper = v;
  else if (!strcmp(k, "mount.work")) m->work = v;
  else if (!strcmp(k, "mount.ro")) m->ro = !strcmp(v, "1");
  else if (!strcmp(k, "mount.tmpfs")) {
    if (parse_ulong(v, ULONG_MAX, &n, 10) < 0) return fail("spec: bad tmpfs size %s", v);
    m->kind = UM_TMPFS;
    m->size = n;
  } else if (!strcmp(k, "mount.mode")) {
    if (parse_ulong(v, 07777, &n, 8) < 0) return fail("spec: bad tmpfs mode %s", v);
    m->mode = (long)n;
  } else return fail("unknown spec key %s", k);
  return 0;
}

int check_user_mounts(void) {
  for (size_t i = 0; i < g_num; i++) {
    struct user_mount *m = &g_um[i];
    if (!m->kind) return fail("spec: mount /%s has no kind", m->target);
    if (m->kind == UM_OVERLAY && (!m->upper || m->upper[0] != '/' || !m->work || m->work[0] != '/'))
      return fail("spec: overlay mount /%s needs absolute upper and work dirs", m->target);
  }
  return 0;
}

static int open_inscope(int rootfd, const char *rel, int flags) {
  struct mb_open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .mode = 0, .resolve = MB_RESOLVE_IN_ROOT | MB_RESOLVE_NO_MAGICLINKS};
  return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
}

/* Is b below a (both relative, no trailing slash)? */
static int below(const char *a, const char *b) {
  size_t n = strlen(a);
  return !strncmp(a, b, n) && b[n] == '/';
}

/* The path of dirfd relative to the rootfs mounted at rootfs (for stubs in the upper dir). */
static int rel_of(int dirfd, const char *rootfs, char *out, size_t n) {
  char p[64], real[PATH_MAX];
  ssize_t len = readlink(fdpath(dirfd, p, sizeof p), real, sizeof real - 1);
  if (len < 0) return fail("readlink: %s", strerror(errno));
  real[len] = '\0';
  size_t rl = strlen(rootfs);
  if (strncmp(real, rootfs, rl) || (real[rl] != '/' && real[rl] != '\0')) return fail("mount target outside the rootfs");
  snprintf(out, n, "%s", real[rl] ? real + rl + 1 : "");
  return 0;
}

/*
 * Makes the target's missing parents (kept) and the target itself: a directory (kept) or an empty
 * file (a stub). Symlinks on the way are followed inside the rootfs. In the child (stubs == 0) the
 * same walk runs through the mounts made so far.
 */
static int make_target(int rootfd, int upperfd, const char *rootfs, struct user_mount *m, int stubs) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", m->target);
  char *slash = strrchr(tmp, '/');
  const char *base = slash ? slash + 1 : tmp;
  if (slash) *slash = '\0';
  /* parents, one component at a time */
  int parent = dup(rootfd);
  if (parent < 0) return fail("dup: %s", strerror(errno));
  if (slash) {
    char sofar[PATH_MAX] = "";
    char *save = NULL;
    for (char *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
      if (sofar[0]) strcat(sofar, "/");
      strcat(sofar, c);
      int n = open_inscope(rootfd, sofar, O_PATH | O_DIRECTORY);
      if (n < 0 && errno == ENOENT) {
        if (mkdirat(parent, c, 0755) < 0 && errno != EEXIST) {
          int e = errno;
          close(parent);
          return fail("creating mount target /%s: %s", m->target, strerror(e));
        }
        n = open_inscope(rootfd, sofar, O_PATH | O_DIRECTORY);
      }
      if (n < 0) {
        int e = errno;
        close(parent);
        return fail("mount target /%s: /%s is %s", m->target, sofar, e == ENOTDIR ? "not a directory" : strerror(e));
      }
      close(parent);
      parent = n;
    }
  }
  struct stat st;
  int r = 0;
  int fd = open_inscope(rootfd, m->target, O_PATH);
  if (fd >= 0) {
    if (fstat(fd, &st) < 0) r = fail("stat /%s: %s", m->target, strerror(errno));
    else if (m->isdir && !S_ISDIR(st.st_mode)) r = fail("mount target /%s is not a directory", m->target);
    else if (!m->isdir && S_ISDIR(st.st_mode)) r = fail("mount target /%s is a directory; the source is a file", m->target);
    close(fd);
  } else if (errno != ENOENT) r = fail("resolving mount target /%s: %s", m->target, strerror(errno));
  else if (m->isdir) {
    if (mkdirat(parent, base, 0755) < 0) r = fail("creating mount target /%s: %s", m->target, strerror(errno));
  } else {
    int f = openat(parent, base, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f < 0) r = fail("creating mount target /%s: %s", m->target, strerror(errno));
    else {
      close(f);
      char rel[PATH_MAX], full[PATH_MAX];
      if (stubs && g_nustubs < MAX_USER_MOUNTS && rel_of(parent, rootfs, rel, sizeof rel) == 0) {
        int fl = snprintf(full, sizeof full, "%.*s%s%s", PATH_MAX / 2, rel, rel[0] ? "/" : "", base);
        if (fl > 0 && fl < (int)sizeof full && fstatat(upperfd, full, &st, AT_SYMLINK_NOFOLLOW) == 0) {
          snprintf(g_ustubs[g_nustubs].rel, PATH_MAX, "%s", full);
          g_ustubs[g_nustubs].dev = st.st_dev;
          g_ustubs[g_nustubs].ino = st.st_ino;
          g_nustubs++;
        }
      }
    }
  }
  close(parent);
  return r;
}

/* Outer helper, rootfs mounted, before the fork. */
int prepare_user_mounts(int rootfd, int upperfd, const char *rootfs) {
  for (size_t i = 0; i < g_num; i++) {
    struct user_mount *m = &g_um[i];
    m->isdir = 1;
    if (m->kind == UM_BIND) {
      struct stat st;
      if (stat(m->src, &st) < 0) return fail("mount source for /%s: %s", m->target, strerror(errno));
      m->isdir = S_ISDIR(st.st_mode);
    }
    for (size_t j = 0; j < i; j++)
      if (below(g_um[j].target, m->target) || !strcmp(g_um[j].target, m->target)) m->nested = 1;
    /* /dev, /proc and /sys are the sandbox's own mounts: a target there is made in them, never in the layer */
    static const char *pseudo[] = {"dev", "proc", "sys"};
    for (size_t j = 0; j < sizeof pseudo / sizeof pseudo[0]; j++)
      if (!strcmp(m->target, pseudo[j]) || below(pseudo[j], m->target)) m->nested = 1;
    if (!m->nested && make_target(rootfd, upperfd, rootfs, m, 1) < 0) return -1;
  }
  return 0;
}

/* Child, before pivot_root: the mounts, in order. */
int mount_user_mounts(int rootfd) {
  for (size_t i = 0; i < g_num; i++) {
    struct user_mount *m = &g_um[i];
    char what[PATH_MAX + 8], p[64], q[64];
    snprintf(what, sizeof what, "/%s", m->target);
    if (m->nested && make_target(rootfd, -1, NULL, m, 0) < 0) return -1;
    int fd = open_inscope(rootfd, m->target, O_PATH | (m->isdir ? O_DIRECTORY : 0));
    if (fd < 0) return fail("resolving mount target %s: %s", what, strerror(errno));
    int r = 0;
    if (m->kind == UM_TMPFS) {
      char data[64] = "";
      int dl = 0;
      if (m->size) dl = snprintf(data, sizeof data, "size=%lu", m->size);
      if (m->mode >= 0) snprintf(data + dl, sizeof data - (size_t)dl, "%smode=%lo", dl ? "," : "", (unsigned long)m->mode);
      r = mount_at("tmpfs", fd, "tmpfs", MS_NOSUID | MS_NODEV, data[0] ? data : NULL, what);
    } else if (m->kind == UM_OVERLAY) {
      struct sbuf o = {0};
      if (sb_str(&o, "lowerdir=") < 0 || sb_str(&o, m->src) < 0 || sb_str(&o, ",upperdir=") < 0 || sb_str(&o, m->upper) < 0 ||
          sb_str(&o, ",workdir=") < 0 || sb_str(&o, m->work) < 0 || sb_add(&o, "", 1) < 0)
        r = fail("out of memory");
      else r = mount_at("overlay", fd, "overlay", 0, o.p, what);
      free(o.p);
    } else {
      int sfd = open(m->src, O_PATH | O_CLOEXEC);
      if (sfd < 0) r = fail("opening mount source for %s: %s", what, strerror(errno));
      else {
        if (mount(fdpath(sfd, p, sizeof p), fdpath(fd, q, sizeof q), NULL, MS_BIND | MS_REC, NULL) < 0)
          r = fail("mounting %s: %s", what, strerror(errno));
        close(sfd);
        if (!r && m->ro) {
          /* the new mount is on top now: reopen the path to reach it */
          int top = open_inscope(rootfd, m->target, O_PATH);
          if (top < 0 || mount(NULL, fdpath(top, p, sizeof p), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
            r = fail("making %s read-only: %s", what, strerror(errno));
          if (top >= 0) close(top);
        }
      }
    }
    close(fd);
    if (r < 0) return -1;
  }
  return 0;
}

/* After the step, rootfs unmounted: the file stubs go if the step left them as they were made. */
int remove_user_stubs(const char *upper) {
  int upperfd = open(upper, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (upperfd < 0) return fail("open %s: %s", upper, strerror(errno));
  int rc = 0;
  for (size_t i = 0; i < g_nustubs; i++) {
    char tmp[PATH_MAX];
    memcpy(tmp, g_ustubs[i].rel, sizeof tmp);
    char *slash = strrchr(tmp, '/');
    const char *base = slash ? slash + 1 : tmp;
    int dfd = upperfd;
    if (slash) {
      *slash = '\0';
      /* no symlink may be followed in the dir the step wrote */
      struct mb_open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .mode = 0, .resolve = MB_RESOLVE_IN_ROOT | MB_RESOLVE_NO_MAGICLINKS | 0x04 /* RESOLVE_NO_SYMLINKS */};
      dfd = (int)syscall(SYS_openat2, upperfd, tmp, &how, sizeof how);
      if (dfd < 0) continue;
    }
    struct stat st;
    if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == g_ustubs[i].dev && st.st_ino == g_ustubs[i].ino &&
        S_ISREG(st.st_mode) && st.st_size == 0 && unlinkat(dfd, base, 0) < 0 && errno != ENOENT)
      rc = fail("removing mount target stub %s/%s: %s", upper, g_ustubs[i].rel, strerror(errno));
    if (dfd != upperfd) close(dfd);
  }
  close(upperfd);
  return rc;
}
