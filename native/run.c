/* mbuild-helper: the outer `run` helper: private mount namespace, rootfs, namespaces, fork, status records. */
#include "helper.h"

volatile sig_atomic_t g_child = 0, g_killreq = 0, g_forward = 0;

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
  const char *list;
  size_t len;
  if (collect_opaque(fd, &list, &len) < 0) return;
  static const char digits[] = "0123456789abcdef";
  char *hex = malloc(len * 2 + 1);
  if (!hex) return;
  for (size_t i = 0; i < len; i++) {
    hex[2 * i] = digits[(unsigned char)list[i] >> 4];
    hex[2 * i + 1] = digits[(unsigned char)list[i] & 15];
  }
  hex[len * 2] = '\0';
  report(s->nonce, "opaque", hex);
  free(hex);
}

int run_main(void) {
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
  if (prepare_user_mounts(rootfd, upperfd, s.rootfs) < 0) goto cleanup;
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
  if (remove_user_stubs(s.rootfsdir ? s.rootfsdir : s.upper) < 0 && !g_err[0]) fail("removing mount stubs failed");
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
