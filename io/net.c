/*
 * Socket helpers: numeric addresses, listening and connecting sockets with
 * the options servers need. Creation, options, bind and listen never block,
 * so they are direct system calls (errno read at once, before any switch);
 * connect goes through the ring (io/ops.c), and a host name given to
 * weft_tcp_connect() through the resolver (io/resolve.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "../runtime/base.h"

int weft_sockaddr(struct sockaddr_storage *ss, const char *addr,
		  uint16_t port)
{
	WEFT__KEEP_ERRNO;
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	if (!ss)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (!addr || inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		if (!addr)
			a4->sin_addr.s_addr = htonl(INADDR_ANY);
		return (int)sizeof(*a4);
	}
	if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		return (int)sizeof(*a6);
	}
	return -EINVAL;
}

static int set_int(int fd, int level, int opt, int v)
{
	return setsockopt(fd, level, opt, &v, sizeof(v)) < 0 ? -errno : 0;
}

int weft_tcp_nodelay(int fd, int on)
{
	WEFT__KEEP_ERRNO;
	return set_int(fd, IPPROTO_TCP, TCP_NODELAY, !!on);
}

int weft_local_port(int fd)
{
	WEFT__KEEP_ERRNO;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

/* socket + options + bind (+ listen when backlog >= 0). */
static int bound_socket(const char *addr, uint16_t port, int type,
			int backlog, unsigned flags)
{
	struct sockaddr_storage ss;
	int len = weft_sockaddr(&ss, addr, port), fd, err = 0;

	if (len < 0)
		return len;
	if (flags & ~(WEFT_SO_REUSEPORT | WEFT_SO_NODELAY | WEFT_SO_V6ONLY))
		return -EINVAL;
	fd = weft_socket(ss.ss_family, type, 0);
	if (fd < 0)
		return fd;
	if (type == SOCK_STREAM)
		err = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (!err && (flags & WEFT_SO_REUSEPORT))
		err = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
	if (!err && (flags & WEFT_SO_NODELAY) && type == SOCK_STREAM)
		err = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	if (!err && ss.ss_family == AF_INET6)
		err = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY,
			      !!(flags & WEFT_SO_V6ONLY));
	if (!err && bind(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0)
		err = -errno;
	if (!err && backlog >= 0 && listen(fd, backlog) < 0)
		err = -errno;
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int weft_tcp_listen(const char *addr, uint16_t port, int backlog,
		    unsigned flags)
{
	WEFT__KEEP_ERRNO;
	return bound_socket(addr, port, SOCK_STREAM,
			    backlog <= 0 ? SOMAXCONN : backlog, flags);
}

int weft_udp_bind(const char *addr, uint16_t port, unsigned flags)
{
	WEFT__KEEP_ERRNO;
	return bound_socket(addr, port, SOCK_DGRAM, -1, flags);
}

/* socket + options + connect to one address; the fd or -errno. */
static int connect_to(const struct sockaddr *sa, socklen_t len,
		      unsigned flags)
{
	int fd = weft_socket(sa->sa_family, SOCK_STREAM, 0), err = 0;

	if (fd < 0)
		return fd;
	if (flags & WEFT_SO_NODELAY)
		err = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	if (!err)
		err = weft_connect(fd, sa, len);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* A host name: resolved on the blocking pool, then each address tried in
 * the order getaddrinfo() gave (RFC 6724 preference) until one connects.
 * Cancellation, or the deadline passing, ends the tries at once; any
 * other error moves on to the next address, and the last one is
 * returned. */
static int connect_host(const char *host, uint16_t port, unsigned flags)
{
	struct addrinfo hints, *res, *ai;
	char service[8];
	int err;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%u", (unsigned)port);
	err = weft_getaddrinfo(host, service, &hints, &res);
	if (err < 0)
		return err;
	err = -ENOENT; /* an empty list; getaddrinfo() never gives one */
	for (ai = res; ai; ai = ai->ai_next) {
		err = connect_to(ai->ai_addr, ai->ai_addrlen, flags);
		if (err >= 0 || err == -ECANCELED ||
		    (err == -ETIMEDOUT && weft_deadline() <= weft_now()))
			break;
	}
	freeaddrinfo(res);
	return err;
}

int weft_tcp_connect(const char *addr, uint16_t port, unsigned flags)
{
	WEFT__KEEP_ERRNO;
	struct sockaddr_storage ss;
	int len;

	if (flags & ~WEFT_SO_NODELAY)
		return -EINVAL;
	/* Numeric addresses (and NULL) need no resolver. */
	len = weft_sockaddr(&ss, addr, port);
	if (len >= 0)
		return connect_to((struct sockaddr *)&ss, (socklen_t)len,
				  flags);
	return connect_host(addr, port, flags);
}

/* sockaddr_un for path; '@' first names an abstract socket. */
static int unix_addr(struct sockaddr_un *sa, const char *path)
{
	size_t n;

	if (!path)
		return -EINVAL;
	n = strlen(path);
	if (n == 0 || n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, n);
	if (path[0] == '@') {
		sa->sun_path[0] = '\0';
		return (int)(offsetof(struct sockaddr_un, sun_path) + n);
	}
	return (int)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

int weft_unix_listen(const char *path, int backlog)
{
	WEFT__KEEP_ERRNO;
	struct sockaddr_un sa;
	int len = unix_addr(&sa, path), fd, err = 0;

	if (len < 0)
		return len;
	fd = weft_socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return fd;
	if (bind(fd, (struct sockaddr *)&sa, (socklen_t)len) < 0 ||
	    listen(fd, backlog <= 0 ? SOMAXCONN : backlog) < 0)
		err = -errno;
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int weft_unix_connect(const char *path)
{
	WEFT__KEEP_ERRNO;
	struct sockaddr_un sa;
	int len = unix_addr(&sa, path), fd, err;

	if (len < 0)
		return len;
	fd = weft_socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return fd;
	err = weft_connect(fd, (struct sockaddr *)&sa, (socklen_t)len);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}
