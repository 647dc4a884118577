/* mbuild-helper: the rootfs mount: an overlay (lowerdir+, then short symlinks past the mount(2) page) or a bound directory. */
#include "helper.h"

/* ------------------------------------------------------- bound directory */

/* Copy snapshotter: the prepared directory itself is the root, bound rw without device nodes. */
int mount_rootfsdir(struct run_spec *s) {
  if (mount(s->rootfsdir, s->rootfs, NULL, MS_BIND, NULL) < 0)
    return fail("bind-mounting %s on %s: %s", s->rootfsdir, s->rootfs, strerror(errno));
  if (mount(NULL, s->rootfs, NULL, MS_REMOUNT | MS_BIND | MS_NODEV, NULL) < 0)
    return fail("remounting %s nodev: %s", s->rootfs, strerror(errno));
  return 0;
}

/* ---------------------------------------------------------------- overlay */

/* Overlay's option parser: backslash escapes ',' (all values) and ':' (lowerdir). */
static int sb_escaped(struct sbuf *s, const char *t) {
  for (; *t; t++) {
    if ((*t == ',' || *t == ':' || *t == '\\') && sb_add(s, "\\", 1) < 0) return -1;
    if (sb_add(s, t, 1) < 0) return -1;
  }
  return 0;
}

#define OVL_EXTRA_OPTS "index=off,redirect_dir=off,metacopy=off"
/* in a user namespace: user.overlay.* xattrs (userxattr), with which the kernel refuses to follow
 * redirects ("off" means "follow" there); no layer of ours has one */
#define OVL_USERNS_OPTS "userxattr,index=off,redirect_dir=nofollow,metacopy=off"
#define OVL_OPTS (in_user_namespace() ? OVL_USERNS_OPTS : OVL_EXTRA_OPTS)

static int overlay_opts(struct run_spec *s, struct sbuf *o) {
  o->len = 0;
  if (sb_str(o, "lowerdir=") < 0) return -1;
  for (size_t i = 0; i < s->lowers.n; i++) {
    if (i && sb_str(o, ":") < 0) return -1;
    if (sb_escaped(o, s->lowers.v[i]) < 0) return -1;
  }
  if (s->upper) { /* none: a read-only view of the lowers */
    if (sb_str(o, ",upperdir=") < 0 || sb_escaped(o, s->upper) < 0) return -1;
    if (sb_str(o, ",workdir=") < 0 || sb_escaped(o, s->work) < 0) return -1;
  }
  return sb_str(o, ",") < 0 ? -1 : sb_str(o, OVL_OPTS);
}

/* New mount API with "lowerdir+" (Linux >= 6.8): no limit on the number of layers. */
static int overlay_newapi(struct run_spec *s, const char *target) {
  int fs = (int)syscall(SYS_fsopen, "overlay", MB_FSOPEN_CLOEXEC);
  if (fs < 0) return -1;
  int e = 0;
  for (size_t i = 0; i < s->lowers.n && !e; i++)
    if (syscall(SYS_fsconfig, fs, MB_FSCONFIG_SET_STRING, "lowerdir+", s->lowers.v[i], 0) < 0) e = errno;
  int userns = in_user_namespace();
  const char *kv[][2] = {{"upperdir", s->upper}, {"workdir", s->work}, {"index", "off"}, {"redirect_dir", userns ? "nofollow" : "off"}, {"metacopy", "off"}};
  for (size_t i = s->upper ? 0 : 2; i < sizeof kv / sizeof kv[0] && !e; i++)
    if (syscall(SYS_fsconfig, fs, MB_FSCONFIG_SET_STRING, kv[i][0], kv[i][1], 0) < 0) e = errno;
  if (!e && userns && syscall(SYS_fsconfig, fs, MB_FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0) e = errno;
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

int mount_overlay(struct run_spec *s) {
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
  if (!bad && s->upper && (symlinkat(s->upper, lfd, "u") < 0 || symlinkat(s->work, lfd, "w") < 0))
    bad = fail("symlink in %s: %s", ldir, strerror(errno));
  close(lfd);
  if (bad || (s->upper && sb_str(&o, ",upperdir=u,workdir=w") < 0) || sb_str(&o, ",") < 0 || sb_str(&o, OVL_OPTS) < 0) return -1;
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
