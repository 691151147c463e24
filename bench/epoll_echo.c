/*
 * epoll_echo: the plain-epoll TCP echo server that the weft echo benchmark
 * is compared against. It uses no weft at all, only what a careful C
 * programmer would write by hand: one thread per CPU, each with its own
 * epoll instance and its own listening socket bound with SO_REUSEPORT to
 * the same port, so that the kernel spreads incoming connections across
 * the threads and a connection never moves between them.
 *
 * Readiness is level-triggered. A connection sits in its epoll set for
 * EPOLLIN; each event reads once into the thread's 64 KiB buffer and sends
 * it straight back. Only a short send changes the interest set: the
 * remainder is copied into the connection and the connection waits for
 * EPOLLOUT alone, so a client that does not read stops being read from
 * (back-pressure) instead of growing the server's memory. The common path
 * therefore costs a share of one epoll_wait, one recv and one send, with no
 * epoll_ctl, and an idle connection owns no buffer.
 *
 * Usage: epoll_echo [-p PORT] [-t THREADS]
 * PORT 0 (the default) lets the kernel pick one; THREADS defaults to the
 * CPUs this process may run on. Prints "listening on port N" once all
 * listeners are bound, serves until SIGINT or SIGTERM, then exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "epoll_common.h"

#define BUF_SIZE	(64 * 1024)
#define MAX_EVENTS	256

struct conn {
	int fd;
	char *pend;		/* unsent bytes after a short send, or NULL */
	size_t pend_off;	/* first unsent byte in pend */
	size_t pend_len;	/* bytes in pend */
	struct conn *prev;	/* the thread's list of open connections, */
	struct conn *next;	/* so that shutdown can close them all */
};

struct worker {
	pthread_t thread;
	int ep;			/* this thread's epoll instance */
	int lfd;		/* this thread's SO_REUSEPORT listener */
	int spare;		/* reserve fd for the EMFILE trick, or -1 */
	struct conn *conns;	/* open connections, for shutdown */
	char buf[BUF_SIZE];	/* receive buffer shared by all connections */
};

/* Tags in epoll_data.ptr for the two fds that are not connections. */
static char listen_tag, stop_tag;

/* Written once by main on SIGINT/SIGTERM; every epoll set watches it. */
static int stop_fd = -1;

static int want(struct worker *w, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	return epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(struct worker *w, struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);	/* also removes it from the epoll set */
	free(c->pend);
	free(c);
}

/*
 * Send len bytes from p. Returns how many were sent (len on success, less
 * when the socket buffer filled up), or -1 when the connection is broken.
 */
static ssize_t send_some(int fd, const char *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);

		if (n > 0) {
			done += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			return -1;
		}
	}
	return (ssize_t)done;
}

/* EPOLLIN: read once and echo it back; returns -1 to close. */
static int on_readable(struct worker *w, struct conn *c)
{
	ssize_t n, sent;

	do
		n = recv(c->fd, w->buf, BUF_SIZE, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -1;
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;

	sent = send_some(c->fd, w->buf, (size_t)n);
	if (sent < 0)
		return -1;
	if (sent == n)
		return 0;

	/* Short send: keep the rest and stop reading until it is gone. */
	c->pend_len = (size_t)(n - sent);
	c->pend_off = 0;
	c->pend = malloc(c->pend_len);
	if (!c->pend)
		return -1;
	memcpy(c->pend, w->buf + sent, c->pend_len);
	return want(w, c, EPOLLOUT);
}

/* EPOLLOUT: flush the remainder; once it is gone, read again. */
static int on_writable(struct worker *w, struct conn *c)
{
	ssize_t sent = send_some(c->fd, c->pend + c->pend_off, c->pend_len);

	if (sent < 0)
		return -1;
	c->pend_off += (size_t)sent;
	c->pend_len -= (size_t)sent;
	if (c->pend_len)
		return 0;
	free(c->pend);
	c->pend = NULL;
	return want(w, c, EPOLLIN);
}

/*
 * Out of descriptors: the pending connection stays in the backlog and a
 * level-triggered listener would report it forever. Give up the spare fd,
 * accept the connection and close it at once, so the client sees a reset
 * rather than a hang and this thread does not spin (libuv's
 * uv__emfile_trick does the same).
 */
static void emfile_trick(struct worker *w)
{
	int fd;

	if (w->spare < 0)
		return;
	close(w->spare);
	while ((fd = accept(w->lfd, NULL, NULL)) >= 0)
		close(fd);
	w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_accept(struct worker *w)
{
	static const int one = 1;

	for (;;) {
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;
		int fd;

		fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				emfile_trick(w);
			return;	/* EAGAIN, or nothing better to do */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		ev.data.ptr = c;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = w->conns;
		if (w->conns)
			w->conns->prev = c;
		w->conns = c;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[MAX_EVENTS];

	for (;;) {
		int n = epoll_wait(w->ep, evs, MAX_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			struct conn *c = p;
			int rc;

			if (p == &stop_tag)
				goto out;
			if (p == &listen_tag) {
				on_accept(w);
				continue;
			}
			/*
			 * EPOLLERR/EPOLLHUP arrive whatever the interest set;
			 * the recv or send below then reports the error.
			 */
			if (c->pend)
				rc = on_writable(w, c);
			else
				rc = on_readable(w, c);
			if (rc < 0)
				conn_close(w, c);
		}
	}
out:
	while (w->conns)
		conn_close(w, w->conns);
	return NULL;
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-p PORT] [-t THREADS]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	int port = 0, nthreads = 0, opt, sig;
	struct worker **ws;
	sigset_t sigs;

	while ((opt = getopt(argc, argv, "p:t:")) != -1) {
		if (opt == 'p')
			port = number(optarg, 65535);
		else if (opt == 't')
			nthreads = number(optarg, 4096);
		else
			usage(argv[0]);
	}
	if (port < 0 || nthreads < 0 || optind != argc)
		usage(argv[0]);
	if (!nthreads)
		nthreads = default_threads();
	if (nthreads < 1)
		nthreads = 1;
	if (port)
		check_port_free(port);

	/*
	 * Block the signals before any thread exists, so every thread
	 * inherits the mask and only sigwait() below ever sees them; the
	 * workers then never get EINTR and need no handler.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (stop_fd < 0)
		die("eventfd");
	ws = calloc((size_t)nthreads, sizeof(*ws));
	if (!ws)
		die("calloc");

	/*
	 * Bind every listener before printing the port, so a script that
	 * connects as soon as it reads the line finds them all. With port 0
	 * the first bind picks the port and the others join it.
	 */
	for (int i = 0; i < nthreads; i++) {
		struct worker *w = malloc(sizeof(*w));

		if (!w)
			die("malloc");
		w->lfd = listener(port);
		if (!port)
			port = bound_port(w->lfd);
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		if (w->ep < 0)
			die("epoll_create1");
		w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
		w->conns = NULL;
		watch(w->ep, w->lfd, &listen_tag);
		watch(w->ep, stop_fd, &stop_tag);
		ws[i] = w;
	}
	printf("listening on port %d\n", port);
	fflush(stdout);

	for (int i = 0; i < nthreads; i++) {
		errno = pthread_create(&ws[i]->thread, NULL, worker_main, ws[i]);
		if (errno)
			die("pthread_create");
	}

	while (sigwait(&sigs, &sig) != 0)
		;

	/* The counter stays non-zero, so every level-triggered set sees it. */
	if (eventfd_write(stop_fd, 1) < 0)
		die("eventfd_write");
	for (int i = 0; i < nthreads; i++) {
		pthread_join(ws[i]->thread, NULL);
		close(ws[i]->ep);
		close(ws[i]->lfd);
		if (ws[i]->spare >= 0)
			close(ws[i]->spare);
		free(ws[i]);
	}
	free(ws);
	close(stop_fd);
	return 0;
}
