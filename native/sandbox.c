/* mbuild-helper: the sandboxed child (pid 1 of its namespaces): cgroups, mounts, pivot_root, privileges, exec. */
#include "helper.h"
#include "seccomp-filter.h"

/* ------------------------------------------------------- the child (pid 1) */

int g_errpipe = -1, g_syncpipe = -1, g_gopipe = -1;

static void __attribute__((noreturn)) child_fail(void) {
  if (!g_err[0]) fail("sandbox setup failed");
  write_all(g_errpipe, g_err, strlen(g_err));
  _exit(SETUP_EXIT);
}

static void check_parent_alive(void) {
  struct pollfd pfd = {.fd = g_syncpipe, .events = POLLIN};
  if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR))) _exit(SETUP_EXIT);
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

/* Docker's default capability set (what a sandboxed step keeps), as a mask. */
uint64_t default_caps(void) {
  uint64_t caps = 0;
  for (int cap = 0; cap < 64; cap++)
    if (cap_kept(cap)) caps |= (uint64_t)1 << cap;
  return caps;
}

/* The seccomp program npm run build saved beside the helper (see seccomp.c), if any. */
void seccomp_cache_path(char *buf, size_t n) {
  ssize_t l = readlink("/proc/self/exe", buf, n - 32);
  char *slash = l > 0 ? memrchr(buf, '/', (size_t)l) : NULL;
  if (!slash) buf[0] = '\0';
  else snprintf(slash + 1, 32, "seccomp-default.bpf");
}

/*
 * The profile's rules as they apply to Docker's default capability set: the program is read (from
 * the file beside the helper) before pivot_root, when that file is still in reach (after it, every
 * step built the program itself), and loaded after.
 */
static struct mb_seccomp_prog g_seccomp;

static int prepare_seccomp(void) {
  char err[512], cache[PATH_MAX];
  seccomp_cache_path(cache, sizeof cache);
  return mb_seccomp_prepare(default_caps(), cache[0] ? cache : NULL, &g_seccomp, err, sizeof err) < 0 ? fail("%s", err) : 0;
}

static int install_seccomp(void) {
  char err[512];
  return mb_seccomp_load(&g_seccomp, err, sizeof err) < 0 ? fail("%s", err) : 0;
}

static int drop_privileges(struct run_spec *s) {
  uint64_t keepmask = 0;
  for (int cap = 0; cap < 64; cap++) {
    int have = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (have < 0) break; /* past the last capability */
    if (!have) continue;  /* not ours to give (insecure: every capability mbuild itself has) */
    if (s->insecure || cap_kept(cap)) keepmask |= (uint64_t)1 << cap;
    else if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) return fail("dropping capability %d: %s", cap, strerror(errno));
  }
  /* --ulimit: while CAP_SYS_RESOURCE is still held (a hard limit may be raised) */
  for (size_t i = 0; i < s->nrlimits; i++)
    if (setrlimit(s->rlimits[i].resource, &s->rlimits[i].lim) < 0) return fail("setrlimit: %s", strerror(errno));
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

void __attribute__((noreturn)) child_main(struct run_spec *s) {
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
  /* a cgroup namespace rooted at the step's own cgroups: its view of cgroupfs ends there */
  if (unshare(CLONE_NEWCGROUP) < 0) fail("unshare cgroup namespace: %s", strerror(errno)), child_fail();
  if (setsid() < 0) fail("setsid: %s", strerror(errno)), child_fail();
  /* a fresh session keyring: nothing of the caller's session reaches the step (as runc) */
  if (syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL) < 0 && errno != ENOSYS)
    fail("joining a new session keyring: %s", strerror(errno)), child_fail();

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
  if (setup_proc(rootfd, &g_targets[3], devnull, s->insecure) < 0) child_fail();
  if (setup_sys(rootfd, &g_targets[4], devnull, s->insecure) < 0) child_fail();
  g_shm_kb = s->shm_kb;
  if (setup_dev(rootfd, &g_targets[5]) < 0) child_fail();
  if (mount_user_mounts(rootfd) < 0) child_fail();

  if (sethostname(s->hostname, strlen(s->hostname)) < 0) fail("sethostname: %s", strerror(errno)), child_fail();
  if (s->net_mode == NET_NONE && bring_up_lo() < 0) child_fail();

  if (!s->insecure && prepare_seccomp() < 0) child_fail();
  if (fchdir(rootfd) < 0) fail("chdir rootfs: %s", strerror(errno)), child_fail();
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root: %s", strerror(errno)), child_fail();
  if (umount2(".", MNT_DETACH) < 0) fail("detaching the old root: %s", strerror(errno)), child_fail();
  if (chdir("/") < 0) fail("chdir /: %s", strerror(errno)), child_fail();
  close(rootfd);
  close(devnull);

  umask(0);
  if (mkdir_p(s->cwd) < 0) child_fail();
  if (chdir(s->cwd) < 0) fail("chdir to working directory %s: %s", s->cwd, strerror(errno)), child_fail();
  /* Docker's seccomp profile, as runc: before the capabilities go (loading needs CAP_SYS_ADMIN) */
  if (!s->insecure && install_seccomp() < 0) child_fail();
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
