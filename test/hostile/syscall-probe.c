/*
 * Tries the system calls a hostile RUN step would use to leave its sandbox and prints one line per
 * probe: "NAME ok" or "NAME ERRNO-NAME". Built static by the tests and copied into a build context.
 *   syscall-probe NAME...      (no NAME: every probe)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#define KEYCTL_GET_KEYRING_ID 0
#define KEY_SPEC_SESSION_KEYRING -3
#define KEY_SPEC_USER_KEYRING -4

static const char *ename(int e) {
  static char buf[32];
  switch (e) {
  case EPERM: return "EPERM";
  case ENOSYS: return "ENOSYS";
  case EACCES: return "EACCES";
  case EINVAL: return "EINVAL";
  case ENOENT: return "ENOENT";
  case EBADF: return "EBADF";
  case EFAULT: return "EFAULT";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case ENOKEY: return "ENOKEY";
  case E2BIG: return "E2BIG";
  }
  snprintf(buf, sizeof buf, "errno%d", e);
  return buf;
}

/* a child made by clone/clone3 exits at once */
static long child_done(long r) {
  if (r == 0) _exit(0);
  if (r > 0) waitpid((pid_t)r, NULL, __WALL);
  return r;
}

static long probe(const char *name) {
  if (!strcmp(name, "getpid")) return syscall(SYS_getpid);
  if (!strcmp(name, "fork")) return child_done(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  if (!strcmp(name, "unshare-user")) return syscall(SYS_unshare, CLONE_NEWUSER);
  if (!strcmp(name, "unshare-mount")) return syscall(SYS_unshare, CLONE_NEWNS);
  if (!strcmp(name, "clone-newuser")) return child_done(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
  if (!strcmp(name, "clone3")) {
    uint64_t args[11] = {0};
    args[4] = SIGCHLD; /* exit_signal */
    return child_done(syscall(SYS_clone3, args, 88));
  }
  if (!strcmp(name, "setns")) {
    int fd = open("/proc/self/ns/uts", O_RDONLY);
    return syscall(SYS_setns, fd, 0);
  }
  if (!strcmp(name, "mount")) return syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, NULL);
  if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
  if (!strcmp(name, "session-keyring")) return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
  if (!strcmp(name, "add_key")) return syscall(SYS_add_key, "user", "mbuild-probe", "x", 1, KEY_SPEC_SESSION_KEYRING);
  if (!strcmp(name, "request_key")) return syscall(SYS_request_key, "user", "mbuild-probe", NULL, 0);
  if (!strcmp(name, "perf_event_open")) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_SOFTWARE;
    a.size = sizeof a;
    a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.exclude_kernel = 1;
    return syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
  }
  if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, 0);
  if (!strcmp(name, "bpf")) {
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = 1;
    return syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a);
  }
  if (!strcmp(name, "io_uring_setup")) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    return syscall(SYS_io_uring_setup, 1, &p);
  }
  if (!strcmp(name, "open_by_handle_at")) {
    char h[sizeof(unsigned int) * 2 + 128];
    memset(h, 0, sizeof h);
    ((unsigned int *)h)[0] = 8;
    return syscall(SYS_open_by_handle_at, AT_FDCWD, h, O_RDONLY);
  }
  if (!strcmp(name, "personality-query")) return syscall(SYS_personality, 0xffffffffUL);
  if (!strcmp(name, "personality-norandom")) return syscall(SYS_personality, ADDR_NO_RANDOMIZE);
  if (!strcmp(name, "socket-inet")) return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
  if (!strcmp(name, "socket-vsock")) return syscall(SYS_socket, 40 /* AF_VSOCK */, SOCK_STREAM, 0);
  if (!strcmp(name, "fchmodat2")) return syscall(SYS_fchmodat2, AT_FDCWD, "/", 0755, 0);
  if (!strcmp(name, "syscall-999")) return syscall(999);
  fprintf(stderr, "unknown probe %s\n", name);
  _exit(2);
}

static const char *all[] = {"getpid", "fork", "unshare-user", "unshare-mount", "clone-newuser", "clone3", "setns", "mount",
                            "keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd", "bpf", "io_uring_setup",
                            "open_by_handle_at", "personality-query", "personality-norandom", "socket-inet", "socket-vsock",
                            "fchmodat2", "syscall-999", NULL};

int main(int argc, char **argv) {
  const char **names = argc > 1 ? (const char **)argv + 1 : all;
  for (; *names; names++) {
    errno = 0;
    long r = probe(*names);
    if (r >= 0 && !strcmp(*names, "session-keyring")) printf("%s %ld\n", *names, r); /* its serial number */
    else if (r >= 0) printf("%s ok\n", *names);
    else printf("%s %s\n", *names, ename(errno));
    fflush(stdout);
  }
  return 0;
}
