/* mbuild-helper: `mount`, one overlay in the caller's own mount namespace (COPY, WORKDIR, read-only views),
 * made by the same code as the RUN sandbox's rootfs (rootfs.c), so every overlay has the same layer limit:
 * none on Linux >= 6.8 (lowerdir+), else as many short links as fit in mount(2)'s page.
 *
 * Spec on stdin, NUL-separated key/value pairs: "target DIR", "state DIR" (an existing private dir
 * where the long-lowerdir fallback makes its links; the caller removes it after unmounting),
 * "lower DIR" (repeatable, top-most first), and "upper DIR" with "work DIR" for a writable overlay
 * (without them the overlay is a read-only view of at least two lowers). Exit 0, or 1 with the
 * reason on stderr, 2 for a malformed spec. */
#include "helper.h"

static int parse_mount_spec(struct buf *b, struct run_spec *s) {
  size_t pos = 0;
  int trunc = 0;
  const char *k, *target = NULL;
  while ((k = next_field(b, &pos, &trunc)) != NULL) {
    const char *v = next_field(b, &pos, &trunc);
    if (!v) break;
    if (v[0] != '/') return fail("mount spec: relative path %s", v);
    if (!strcmp(k, "target")) target = v;
    else if (!strcmp(k, "state")) s->state = v;
    else if (!strcmp(k, "lower")) {
      if (sl_push(&s->lowers, v) < 0) return -1;
    } else if (!strcmp(k, "upper")) s->upper = v;
    else if (!strcmp(k, "work")) s->work = v;
    else return fail("mount spec: unknown key %s", k);
  }
  if (trunc) return fail("malformed mount spec");
  if (!target || !s->state) return fail("mount spec: target or state dir missing");
  if (!s->upper != !s->work) return fail("mount spec: upper and work go together");
  if (s->lowers.n < (s->upper ? 1u : 2u)) return fail("mount spec: too few lower dirs");
  if (snprintf(s->rootfs, sizeof s->rootfs, "%s", target) >= (int)sizeof s->rootfs) return fail("target path too long");
  return 0;
}

int run_mount(void) {
  struct buf b;
  struct run_spec s;
  memset(&s, 0, sizeof s);
  if (read_all(0, &b, (size_t)64 << 20) < 0 || parse_mount_spec(&b, &s) < 0) {
    dprintf(2, "mbuild-helper: %s\n", g_err);
    return 2;
  }
  if (mount_overlay(&s) < 0) {
    dprintf(2, "%s\n", g_err);
    return 1;
  }
  return 0;
}
