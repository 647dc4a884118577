/*
 * mbuild-helper: the few things mbuild needs that Node cannot do.
 *
 *   mbuild-helper fsops              ops on stdin (NUL-separated fields), see run_fsops()
 *   mbuild-helper find-opaque ROOT   NUL-separated relative paths of opaque dirs on stdout
 *   mbuild-helper run                sandbox spec on stdin (NUL-separated key/value pairs), see run_main()
 *   mbuild-helper mount              one overlay mount in the caller's mount namespace, see mount.c
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
 * Its source files and what each holds: helper.h.
 */
#include "helper.h"
#include "seccomp-filter.h"

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "fsops")) return run_fsops();
  if (argc == 3 && !strcmp(argv[1], "find-opaque")) return run_find_opaque(argv[2]);
  if (argc == 2 && !strcmp(argv[1], "run")) return run_main();
  if (argc == 2 && !strcmp(argv[1], "seccomp-export")) { /* at build: the program run loads (seccomp.c) */
    char err[512], path[PATH_MAX];
    seccomp_cache_path(path, sizeof path);
    if (path[0] && mb_seccomp_export(default_caps(), path, err, sizeof err) == 0) return 0;
    dprintf(2, "mbuild-helper seccomp-export: %s\n", path[0] ? err : "cannot find the helper's directory");
    return 1;
  }
  if (argc == 2 && !strcmp(argv[1], "mount")) return run_mount();
  dprintf(2, "usage: mbuild-helper fsops | find-opaque ROOT | run | mount   (input on stdin) | seccomp-export\n");
  return 2;
}
