/*
 * LD_PRELOAD shim: a server that binds the wildcard address gets loopback instead.
 *
 * Why: the FalkorDB module (4.16) opens its Bolt listener on [::] (every interface, IPv4 too)
 * and has no option to choose the address. Loaded into redis-server, this bind() turns
 * 0.0.0.0 into 127.0.0.1 and :: into ::ffff:127.0.0.1 (IPv4 loopback on the same IPv6 socket,
 * so clients keep dialling 127.0.0.1). Every other bind() passes through untouched.
 * Compiled at engine start by agentbus.runtime.engines.loopback; see graph.py.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static bind_fn real_bind(void) {
    static bind_fn found;
    if (!found) {
        found = (bind_fn)dlsym(RTLD_NEXT, "bind");
    }
    return found;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    bind_fn next = real_bind();
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in v4;
        memcpy(&v4, addr, sizeof v4);
        if (v4.sin_addr.s_addr == htonl(INADDR_ANY)) {
            v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return next(fd, (const struct sockaddr *)&v4, sizeof v4);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 v6;
        memcpy(&v6, addr, sizeof v6);
        if (IN6_IS_ADDR_UNSPECIFIED(&v6.sin6_addr)) {
            /* A v4-mapped address needs a dual-stack socket (net.ipv6.bindv6only may be 1). */
            int off = 0;
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
            static const unsigned char mapped_loopback[16] = {
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
            memcpy(&v6.sin6_addr, mapped_loopback, sizeof mapped_loopback);
            return next(fd, (const struct sockaddr *)&v6, sizeof v6);
        }
    }
    return next(fd, addr, len);
}
