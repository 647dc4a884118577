/* mbuild-helper: loopback and bridge networking (the address the caller sends on fd 3). */
#include "helper.h"

static int if_up(int sock, const char *ifname) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return fail("SIOCGIFFLAGS %s: %s", ifname, strerror(errno));
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) return fail("bringing up %s: %s", ifname, strerror(errno));
  return 0;
}

int bring_up_lo(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket: %s", strerror(errno));
  int r = if_up(s, "lo");
  close(s);
  return r;
}

/* ------------------------------------------------------ bridge networking */

int read_netcfg(int fd, struct netcfg *c) {
  struct buf b = {0};
  size_t cap = 4096;
  b.data = malloc(cap + 1);
  if (!b.data) return fail("out of memory");
  for (;;) {
    if (g_killreq) return fail("interrupted while waiting for the network");
    if (b.len == cap) return fail("network configuration too large");
    ssize_t r = read(fd, b.data + b.len, cap - b.len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail("reading the network configuration: %s", strerror(errno));
    if (r == 0) break;
    b.len += (size_t)r;
  }
  b.data[b.len] = '\0';
  memset(c, 0, sizeof *c);
  snprintf(c->ifname, sizeof c->ifname, "eth0");
  size_t pos = 0;
  int trunc = 0, have_addr = 0;
  unsigned long prefix = 33;
  const char *k;
  while ((k = next_field(&b, &pos, &trunc)) != NULL) {
    const char *v = next_field(&b, &pos, &trunc);
    if (!v) break;
    if (!strcmp(k, "abort")) return fail("%s", v);
    if (!strcmp(k, "addr")) {
      if (inet_pton(AF_INET, v, &c->addr) != 1) return fail("bad address %s", v);
      have_addr = 1;
    } else if (!strcmp(k, "prefix")) {
      if (parse_ulong(v, 32, &prefix, 10) < 0) return fail("bad prefix length %s", v);
    } else if (!strcmp(k, "gw")) {
      if (inet_pton(AF_INET, v, &c->gw) != 1) return fail("bad gateway %s", v);
      c->have_gw = 1;
    } else if (!strcmp(k, "ifname")) {
      if (!*v || strlen(v) >= IFNAMSIZ || strchr(v, '/')) return fail("bad interface name %s", v);
      snprintf(c->ifname, sizeof c->ifname, "%s", v);
    } else return fail("unknown network key %s", k);
  }
  if (trunc) return fail("malformed network configuration");
  if (!have_addr || prefix > 32) return fail("the caller did not set up the network");
  c->mask.s_addr = prefix ? htonl(~0U << (32 - prefix)) : 0;
  return 0;
}

static int set_if_addr(int sock, const char *ifname, unsigned long req, struct in_addr a, const char *what) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = a};
  memcpy(&ifr.ifr_addr, &sin, sizeof sin);
  if (ioctl(sock, req, &ifr) < 0) return fail("setting the %s of %s: %s", what, ifname, strerror(errno));
  return 0;
}

/* Address, link up, lo up and the default route: in the helper, still holding every capability. */
int configure_net(const struct netcfg *c) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket: %s", strerror(errno));
  int r = -1;
  if (set_if_addr(s, c->ifname, SIOCSIFADDR, c->addr, "address") < 0) goto out;
  if (set_if_addr(s, c->ifname, SIOCSIFNETMASK, c->mask, "netmask") < 0) goto out;
  if (if_up(s, c->ifname) < 0 || if_up(s, "lo") < 0) goto out;
  if (c->have_gw) {
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    struct sockaddr_in any = {.sin_family = AF_INET}, gw = {.sin_family = AF_INET, .sin_addr = c->gw};
    memcpy(&rt.rt_dst, &any, sizeof any);
    memcpy(&rt.rt_genmask, &any, sizeof any);
    memcpy(&rt.rt_gateway, &gw, sizeof gw);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    if (ioctl(s, SIOCADDRT, &rt) < 0) {
      fail("adding the default route: %s", strerror(errno));
      goto out;
    }
  }
  r = 0;
out:
  close(s);
  return r;
}
