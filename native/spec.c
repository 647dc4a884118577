/* mbuild-helper: the `run` sandbox spec (NUL-separated key/value pairs on stdin). */
#include "helper.h"

int parse_run_spec(struct buf *b, struct run_spec *s) {
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
    } else if (!strcmp(k, "security")) {
      if (!strcmp(v, "insecure")) s->insecure = 1;
      else if (!strcmp(v, "sandbox")) s->insecure = 0;
      else return fail("bad security mode %s", v);
    } else if (!strcmp(k, "signals")) {
      if (!strcmp(v, "forward")) s->forward_signals = 1;
      else if (!strcmp(v, "kill")) s->forward_signals = 0;
      else return fail("bad signals mode %s", v);
    } else if (!strncmp(k, "mount", 5)) {
      if (parse_user_mount_field(k, v) < 0) return -1;
    } else if (!strcmp(k, "shmsize")) {
      if (parse_ulong(v, 1UL << 40, &n, 10) < 0 || n == 0) return fail("bad shm size %s", v);
      s->shm_kb = n;
    } else if (!strcmp(k, "rlimit")) {
      /* NAME:SOFT:HARD, -1 for unlimited (docker's --ulimit names) */
      static const struct { const char *name; int res; } names[] = {
          {"core", RLIMIT_CORE},       {"cpu", RLIMIT_CPU},         {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},
          {"locks", RLIMIT_LOCKS},     {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
          {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},     {"rss", RLIMIT_RSS},         {"rtprio", RLIMIT_RTPRIO},
          {"rttime", RLIMIT_RTTIME},   {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK}, {"as", RLIMIT_AS}};
      char name[16];
      long long soft, hard;
      if (s->nrlimits >= sizeof s->rlimits / sizeof s->rlimits[0]) return fail("too many rlimits");
      if (sscanf(v, "%15[a-z]:%lld:%lld", name, &soft, &hard) != 3) return fail("bad rlimit %s", v);
      int res = -1;
      for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i].name, name)) res = names[i].res;
      if (res < 0) return fail("unknown rlimit %s", name);
      s->rlimits[s->nrlimits].resource = res;
      s->rlimits[s->nrlimits].lim.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
      s->rlimits[s->nrlimits].lim.rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard;
      s->nrlimits++;
    } else return fail("unknown spec key %s", k);
  }
  if (trunc) return fail("malformed spec");
  if (check_user_mounts() < 0) return -1;
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
