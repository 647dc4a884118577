/*
 * The RUN step's seccomp filter: Docker's default profile (see seccomp-filter.h). The profile is data
 * (seccomp-profile.gen.h); this file only decides which of its rules apply here, hands them to
 * libseccomp, and puts a short BPF prefix of its own in front of libseccomp's program.
 */
#define _GNU_SOURCE
#include "seccomp-filter.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <unistd.h>

enum { SP_ALLOW = 1, SP_ERRNO = 2 };
struct sp_arg {
  unsigned index;
  enum scmp_compare op;
  uint64_t value, value2;
};
struct sp_cond {
  const int *caps;            /* -1 terminated */
  const char *const *arches;  /* Go's names (amd64, arm64, ...), as moby's profile uses them */
  const char *min_kernel;     /* "4.8" */
};
struct sp_rule {
  const char *const *names;
  int action;
  int errno_ret; /* 0: the default errno */
  const struct sp_arg *args;
  unsigned nargs;
  struct sp_cond inc, exc;
};
struct sp_archmap {
  uint32_t arch;
  uint32_t sub[4]; /* 0 terminated */
};
#include "seccomp-profile.gen.h"

#if defined(__x86_64__) && defined(__ILP32__)
#define SP_GOARCH "x32"
#elif defined(__x86_64__)
#define SP_GOARCH "amd64"
#elif defined(__i386__)
#define SP_GOARCH "x86"
#elif defined(__aarch64__)
#define SP_GOARCH "arm64"
#elif defined(__arm__)
#define SP_GOARCH "arm"
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SP_GOARCH "ppc64le"
#elif defined(__s390x__)
#define SP_GOARCH "s390x"
#elif defined(__riscv) && __riscv_xlen == 64
#define SP_GOARCH "riscv64"
#else
#define SP_GOARCH "unknown"
#endif

#define X32_SYSCALL_BIT 0x40000000u

static int seterr(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int seterr(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, n, fmt, ap);
  va_end(ap);
  return -1;
}

static int kernel_at_least(const char *want) {
  struct utsname u;
  int kmaj = 0, kmin = 0, wmaj = 0, wmin = 0;
  if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &kmaj, &kmin) != 2 || sscanf(want, "%d.%d", &wmaj, &wmin) != 2) return 0;
  return kmaj > wmaj || (kmaj == wmaj && kmin >= wmin);
}

static int has_all_caps(const int *caps, uint64_t set) {
  for (; *caps >= 0; caps++)
    if (*caps > 63 || !(set >> *caps & 1)) return 0;
  return 1;
}

static int has_any_cap(const int *caps, uint64_t set) {
  for (; *caps >= 0; caps++)
    if (*caps <= 63 && (set >> *caps & 1)) return 1;
  return 0;
}

static int in_list(const char *const *list, const char *s) {
  for (; *list; list++)
    if (!strcmp(*list, s)) return 1;
  return 0;
}

/* moby's rule selection: excludes first (any match drops the rule), then includes (all must hold). */
static int rule_applies(const struct sp_rule *r, uint64_t caps) {
  if (r->exc.arches && in_list(r->exc.arches, SP_GOARCH)) return 0;
  if (r->exc.caps && has_any_cap(r->exc.caps, caps)) return 0;
  if (r->exc.min_kernel && kernel_at_least(r->exc.min_kernel)) return 0;
  if (r->inc.arches && !in_list(r->inc.arches, SP_GOARCH)) return 0;
  if (r->inc.caps && !has_all_caps(r->inc.caps, caps)) return 0;
  if (r->inc.min_kernel && !kernel_at_least(r->inc.min_kernel)) return 0;
  return 1;
}

static int add_rule(scmp_filter_ctx ctx, const struct sp_rule *r, char *err, size_t errlen) {
  uint32_t act = r->action == SP_ALLOW ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(r->errno_ret ? r->errno_ret : SP_DEFAULT_ERRNO);
  if (act == SCMP_ACT_ERRNO(SP_DEFAULT_ERRNO)) return 0; /* the same as the default: nothing to add */
  struct scmp_arg_cmp conds[6];
  unsigned n = r->nargs > 6 ? 6 : r->nargs;
  int repeated = 0; /* two conditions on one argument: libseccomp cannot AND them, so each is a rule (as runc) */
  for (unsigned i = 0; i < n; i++) {
    conds[i] = (struct scmp_arg_cmp){.arg = r->args[i].index, .op = r->args[i].op, .datum_a = r->args[i].value, .datum_b = r->args[i].value2};
    for (unsigned j = 0; j < i; j++)
      if (r->args[j].index == r->args[i].index) repeated = 1;
  }
  for (const char *const *name = r->names; *name; name++) {
    int nr = seccomp_syscall_resolve_name(*name);
    if (nr == __NR_SCMP_ERROR) continue; /* unknown to this libseccomp: the ENOSYS prefix covers it */
    int rc = 0;
    if (!repeated) rc = seccomp_rule_add_array(ctx, act, nr, n, conds);
    else
      for (unsigned i = 0; i < n && rc == 0; i++) rc = seccomp_rule_add_array(ctx, act, nr, 1, &conds[i]);
    if (rc < 0) return seterr(err, errlen, "seccomp rule for %s: %s", *name, strerror(-rc));
  }
  return 0;
}

/* The highest syscall number libseccomp can name for an architecture. */
static uint32_t max_known(uint32_t arch) {
  uint32_t max = 0;
  for (int nr = 0; nr < 2048; nr++) {
    char *name = seccomp_syscall_resolve_num_arch(arch, nr);
    if (name) {
      max = (uint32_t)nr;
      free(name);
    }
  }
  return max;
}

/*
 * Before libseccomp's program: for each real architecture of the filter, a syscall number above the
 * highest libseccomp knows returns ENOSYS (runc's idea), so a syscall newer than this libseccomp
 * reads as "not implemented" and libc falls back, instead of EPERM. x32 calls go straight on.
 */
static size_t enosys_prefix(struct sock_filter *f, const uint32_t *arches, size_t narches) {
  size_t n = 0, ends[32], nends = 0;
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  for (size_t i = 0; i < narches; i++) {
    int x32 = arches[i] == AUDIT_ARCH_X86_64;
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arches[i], 0, x32 ? 4 : 3);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    if (x32) {
      ends[nends++] = n;
      f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, X32_SYSCALL_BIT, 0, 0);
    }
    ends[nends++] = n;
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, max_known(arches[i]), 0, 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
  }
  /* every "go on" jump lands just past the prefix, on libseccomp's first instruction */
  for (size_t i = 0; i < nends; i++) {
    struct sock_filter *j = &f[ends[i]];
    uint8_t off = (uint8_t)(n - ends[i] - 1);
    if ((j->code & BPF_OP(0xff)) == BPF_JSET) j->jt = off;
    else j->jf = off;
  }
  return n;
}

/* The whole program (prefix + libseccomp's) for `caps`, in *out (malloc'd), its length in *n. */
static int build_program(uint64_t caps, struct sock_filter **out, size_t *n, char *err, size_t errlen) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(SP_DEFAULT_ERRNO));
  if (!ctx) return seterr(err, errlen, "seccomp_init failed");
  int rc = -1, fd = -1;
  struct sock_filter *prog = NULL;
  uint32_t native = seccomp_arch_native(), arches[8];
  size_t narches = 0;
  if (native != SCMP_ARCH_X32) arches[narches++] = native;
  for (size_t i = 0; i < sizeof sp_archmap / sizeof sp_archmap[0]; i++) {
    if (sp_archmap[i].arch != native) continue;
    for (const uint32_t *a = sp_archmap[i].sub; *a; a++) {
      int r = seccomp_arch_add(ctx, *a);
      if (r < 0 && r != -EEXIST) {
        seterr(err, errlen, "seccomp: adding architecture %#x: %s", *a, strerror(-r));
        goto out;
      }
      if (*a != SCMP_ARCH_X32 && narches < 7) arches[narches++] = *a;
    }
  }
  for (size_t i = 0; i < sizeof sp_rules / sizeof sp_rules[0]; i++)
    if (rule_applies(&sp_rules[i], caps) && add_rule(ctx, &sp_rules[i], err, errlen) < 0) goto out;

  fd = memfd_create("mbuild-seccomp", MFD_CLOEXEC);
  if (fd < 0) {
    seterr(err, errlen, "seccomp: memfd_create: %s", strerror(errno));
    goto out;
  }
  int r = seccomp_export_bpf(ctx, fd);
  off_t len = lseek(fd, 0, SEEK_END);
  if (r < 0 || len <= 0 || len % sizeof(struct sock_filter)) {
    seterr(err, errlen, "seccomp: exporting the filter failed: %s", r < 0 ? strerror(-r) : "bad length");
    goto out;
  }
  size_t nlib = (size_t)len / sizeof(struct sock_filter), npre_max = 1 + 6 * narches;
  prog = calloc(npre_max + nlib, sizeof *prog);
  if (!prog) {
    seterr(err, errlen, "seccomp: out of memory");
    goto out;
  }
  size_t npre = enosys_prefix(prog, arches, narches);
  if (pread(fd, prog + npre, (size_t)len, 0) != len) {
    seterr(err, errlen, "seccomp: reading the filter back: %s", strerror(errno));
    goto out;
  }
  if (npre + nlib > BPF_MAXINSNS) {
    seterr(err, errlen, "seccomp: the filter has %zu instructions, more than the kernel takes", npre + nlib);
    goto out;
  }
  *out = prog;
  *n = npre + nlib;
  prog = NULL;
  rc = 0;
out:
  if (fd >= 0) close(fd);
  free(prog);
  seccomp_release(ctx);
  return rc;
}

/*
 * Building the program costs ~25 ms of CPU (libseccomp), per RUN step. It only depends on what the
 * key names, so the build (npm run build: `mbuild-helper seccomp-export`) saves it beside the
 * helper, and a step loads that file when its key line matches, else builds the program itself.
 */
static void cache_key(uint64_t caps, char *buf, size_t n) {
  struct utsname u;
  const struct scmp_version *v = seccomp_version();
  if (uname(&u) < 0) u.release[0] = '\0';
  snprintf(buf, n, "mbuild-seccomp 1 caps=%llx arch=%x kernel=%s libseccomp=%u.%u.%u rules=%zu\n", (unsigned long long)caps,
           seccomp_arch_native(), u.release, v ? v->major : 0, v ? v->minor : 0, v ? v->micro : 0, sizeof sp_rules / sizeof sp_rules[0]);
}

static int load_cached(uint64_t caps, const char *path, struct sock_filter **out, size_t *n) {
  FILE *f = path ? fopen(path, "rbe") : NULL;
  if (!f) return -1;
  char want[512], got[512];
  cache_key(caps, want, sizeof want);
  int rc = -1;
  struct sock_filter *prog = malloc(BPF_MAXINSNS * sizeof *prog);
  if (prog && fgets(got, sizeof got, f) && !strcmp(got, want)) {
    size_t k = fread(prog, sizeof *prog, BPF_MAXINSNS, f);
    if (k > 0 && !ferror(f) && feof(f)) {
      *out = prog;
      *n = k;
      prog = NULL;
      rc = 0;
    }
  }
  free(prog);
  fclose(f);
  return rc;
}

int mb_seccomp_prepare(uint64_t caps, const char *cache, struct mb_seccomp_prog *out, char *err, size_t errlen) {
  struct sock_filter *prog = NULL;
  size_t n = 0;
  if (load_cached(caps, cache, &prog, &n) < 0 && build_program(caps, &prog, &n, err, errlen) < 0) return -1;
  out->filter = prog;
  out->len = n;
  return 0;
}

int mb_seccomp_load(struct mb_seccomp_prog *p, char *err, size_t errlen) {
  struct sock_fprog fprog = {.len = (unsigned short)p->len, .filter = p->filter};
  int rc = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0);
  int e = errno;
  free(p->filter);
  p->filter = NULL;
  return rc < 0 ? seterr(err, errlen, "seccomp: loading the filter: %s", strerror(e)) : 0;
}

int mb_seccomp_export(uint64_t caps, const char *path, char *err, size_t errlen) {
  struct sock_filter *prog = NULL;
  size_t n = 0;
  if (build_program(caps, &prog, &n, err, errlen) < 0) return -1;
  char key[512], tmp[4096];
  cache_key(caps, key, sizeof key);
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wbe");
  int ok = f && fputs(key, f) >= 0 && fwrite(prog, sizeof *prog, n, f) == n;
  if (f && fclose(f) != 0) ok = 0;
  free(prog);
  if (!ok || rename(tmp, path) < 0) {
    int e = errno;
    unlink(tmp);
    return seterr(err, errlen, "writing %s: %s", path, strerror(e));
  }
  return 0;
}
