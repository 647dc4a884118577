/* mbuild-helper: /proc, /sys and /dev in the sandbox, with Docker's masked and read-only paths. */
#include "helper.h"
#include <sys/statvfs.h>

int mount_at(const char *src, int fd, const char *type, unsigned long flags, const char *data, const char *what) {
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

/* unmasked (RUN --security=insecure): nothing hidden or read-only, as Docker's --privileged */
int setup_proc(int rootfd, struct target *t, int devnull, int unmasked) {
  int fd = open_target(rootfd, t);
  if (fd < 0) return -1;
  int r = mount_at("proc", fd, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "/proc");
  close(fd);
  if (r < 0) return -1;
  int pfd = openat(rootfd, "proc", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0 || !fs_magic_is(pfd, PROCFS_MAGIC)) return fail("reopening /proc after mounting it failed");
  char what[64];
  for (int i = 0; !unmasked && g_masked_proc[i]; i++) {
    snprintf(what, sizeof what, "/proc/%s", g_masked_proc[i]);
    if (mask_path(pfd, g_masked_proc[i], devnull, what) < 0) return -1;
  }
  for (int i = 0; !unmasked && g_ro_proc[i]; i++) {
    snprintf(what, sizeof what, "/proc/%s", g_ro_proc[i]);
    if (ro_bind(pfd, g_ro_proc[i], what) < 0) return -1;
  }
  close(pfd);
  return 0;
}

static int bind_host_sys(int rootfd, int fd) {
  char p[64];
  if (mount("/sys", fdpath(fd, p, sizeof p), NULL, MS_BIND | MS_REC, NULL) < 0) return fail("binding the host's /sys: %s", strerror(errno));
  int top = openat(rootfd, "sys", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC); /* the new mount's root */
  if (top < 0) return fail("reopening /sys: %s", strerror(errno));
  fdpath(top, p, sizeof p);
  /* the host's mount flags are locked in a user namespace: keep them, add read-only */
  struct statvfs sv;
  unsigned long keep = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (statvfs("/sys", &sv) == 0) {
    if (sv.f_flag & ST_NOATIME) keep |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) keep |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) keep |= MS_RELATIME;
  }
  int r = mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL);
  int e = errno;
  close(top);
  return r < 0 ? fail("remounting /sys read-only: %s", strerror(e)) : 0;
}

int setup_sys(int rootfd, struct target *t, int devnull, int unmasked) {
  int fd = open_target(rootfd, t);
  if (fd < 0) return -1;
  int r = mount_at("sysfs", fd, "sysfs", (unmasked ? 0 : MS_RDONLY) | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "/sys");
  /* in a user namespace sysfs can be mounted only in a network namespace it owns: with the host's
   * network (rootless --network host) the host's /sys is bound read-only instead, as runc does */
  if (r < 0 && errno == EPERM && in_user_namespace()) {
    g_err[0] = '\0';
    r = bind_host_sys(rootfd, fd);
  }
  close(fd);
  if (r < 0) return -1;
  int sfd = openat(rootfd, "sys", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
  if (sfd < 0 || !fs_magic_is(sfd, SYSFS_MAGIC_)) return fail("reopening /sys after mounting it failed");
  if (!unmasked && mask_path(sfd, "firmware", devnull, "/sys/firmware") < 0) return -1;
  if (!unmasked && mask_path(sfd, "devices/virtual/powercap", devnull, "/sys/devices/virtual/powercap") < 0) return -1;
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

unsigned long long g_shm_kb;

int setup_dev(int rootfd, struct target *t) {
  char shm_opts[64];
  snprintf(shm_opts, sizeof shm_opts, "mode=1777,size=%lluk", g_shm_kb ? g_shm_kb : 65536ULL);
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
      {"shm", "tmpfs", shm_opts, MS_NOSUID | MS_NODEV | MS_NOEXEC, 1},
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
