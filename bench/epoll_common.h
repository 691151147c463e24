/*
 * Pieces the plain-epoll baselines (epoll_echo.c, epoll_http.c) share: a
 * SO_REUSEPORT listener per thread, the port checks, epoll registration,
 * thread count and number parsing. No weft here, on purpose. Header-only:
 * each baseline is one program.
 */
#ifndef WEFT_BENCH_EPOLL_COMMON_H
#define WEFT_BENCH_EPOLL_COMMON_H

#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int listener(int port)
{
	static const int one = 1;
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_ANY),
	};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		die("setsockopt");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(fd, SOMAXCONN) < 0)
		die("listen");
	return fd;
}

/*
 * SO_REUSEPORT lets a second copy of this server, run by the same user,
 * bind the same port and silently take half its connections. A socket
 * without SO_REUSEPORT cannot bind a port that has a listener, so one such
 * bind, dropped at once, tells whether the port is free.
 */
static void check_port_free(int port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_ANY),
	};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	static const int one = 1;

	if (fd < 0)
		die("socket");
	/* SO_REUSEADDR so that a TIME_WAIT leftover does not count. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("setsockopt");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	close(fd);
}

static int bound_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die("getsockname");
	return ntohs(sa.sin_port);
}

static void watch(int ep, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl");
}

/* The CPUs this process may run on, as nproc(1) counts them. */
static int default_threads(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

/* A whole decimal number in [0, max], or -1. */
static int number(const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		return -1;
	return (int)v;
}

#endif /* WEFT_BENCH_EPOLL_COMMON_H */
