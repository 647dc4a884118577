/* mbuild-helper: errors, input buffers, string builders. */
#include "helper.h"

/* ------------------------------------------------------------------ errors */

char g_err[2048];

/* Records the first error; always returns -1. */
int fail(const char *fmt, ...) {
  if (g_err[0]) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  return -1;
}

void write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    c += w;
    n -= (size_t)w;
  }
}

const char *fdpath(int fd, char *buf, size_t n) {
  snprintf(buf, n, "/proc/self/fd/%d", fd);
  return buf;
}

/* --------------------------------------------------------- input buffers */

int read_all(int fd, struct buf *b, size_t max) {
  size_t cap = 65536;
  b->data = malloc(cap + 1);
  b->len = 0;
  if (!b->data) return fail("out of memory");
  for (;;) {
    if (b->len == cap) {
      if (cap >= max) return fail("input larger than %zu bytes", max);
      cap *= 2;
      char *n = realloc(b->data, cap + 1);
      if (!n) return fail("out of memory");
      b->data = n;
    }
    ssize_t r = read(fd, b->data + b->len, cap - b->len);
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail("reading stdin: %s", strerror(errno));
    }
    if (r == 0) break;
    b->len += (size_t)r;
  }
  b->data[b->len] = '\0';
  return 0;
}

/* Next NUL-terminated field of b starting at *pos, or NULL at the end / on truncation. */
const char *next_field(struct buf *b, size_t *pos, int *truncated) {
  if (*pos >= b->len) return NULL;
  const char *f = b->data + *pos;
  size_t l = strnlen(f, b->len - *pos);
  if (*pos + l >= b->len) {
    *truncated = 1;
    return NULL;
  }
  *pos += l + 1;
  return f;
}

int parse_ulong(const char *s, unsigned long max, unsigned long *out, int base) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, base);
  if (errno || *end || v > max || s[0] == '-') return -1;
  *out = v;
  return 0;
}

/* ------------------------------------------------------------ string lists */

int sl_push(struct strlist *l, const char *s) {
  if (l->n + 1 >= l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    const char **nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) return fail("out of memory");
    l->v = nv;
    l->cap = nc;
  }
  l->v[l->n++] = s;
  l->v[l->n] = NULL;
  return 0;
}

/* --------------------------------------------------------- string builder */

int sb_add(struct sbuf *s, const char *t, size_t n) {
  if (s->len + n + 1 > s->cap) {
    size_t nc = s->cap ? s->cap : 1024;
    while (s->len + n + 1 > nc) nc *= 2;
    char *np = realloc(s->p, nc);
    if (!np) return fail("out of memory");
    s->p = np;
    s->cap = nc;
  }
  memcpy(s->p + s->len, t, n);
  s->len += n;
  s->p[s->len] = '\0';
  return 0;
}
int sb_str(struct sbuf *s, const char *t) { return sb_add(s, t, strlen(t)); }

/* ---------------------------------------------------------- filesystems */

int fs_magic_is(int fd, long magic) {
  struct statfs sf;
  return fstatfs(fd, &sf) == 0 && (long)sf.f_type == magic;
}

/* The initial user namespace maps every id to itself: "0 0 4294967295". Anything else is a user
 * namespace of ours (cli/rootless.ts), where overlay needs "userxattr" and mknod of devices fails. */
int in_user_namespace(void) {
  static int known = -1;
  if (known >= 0) return known;
  char buf[256] = "";
  int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  unsigned long inner, outer, count;
  known = !(n > 0 && sscanf(buf, "%lu %lu %lu", &inner, &outer, &count) == 3 && inner == 0 && outer == 0 && count == 4294967295UL);
  return known;
}
