/*
 * A multi-worker TCP echo server: one task accepts, and every connection
 * gets a detached task of its own that sends back whatever it receives
 * until the peer closes. The connection tasks spread over all workers
 * (stolen like any others), so the server uses every core without any
 * threading code here.
 *
 *   echo_server [-p PORT] [-a ADDR] [-w WORKERS] [-n CONNECTIONS]
 *               [-i IDLE_SECONDS] [-r | -l] [-A]
 *
 * -p 0 (the default) takes any free port; the line `listening on port N`
 * says which. -n N exits once N connections have been served to
 * completion (for tests). A connection that sends nothing, or reads none
 * of its echo, for -i seconds (default 60) is closed: each receive and
 * each write sits in a deadline scope (a client that sends and never
 * reads would otherwise hold its connection, and the bytes queued for it,
 * for ever). SIGINT or SIGTERM stops the server (WEFT_RUN_STOP_ON_SIGNALS:
 * weft turns the signal into weft_stop(), which cancels main, so the
 * accept returns -ECANCELED); a stop is a clean end: exit status 0.
 * Connection tasks still open then are cancelled, given the shutdown
 * grace, and dropped, as the runtime promises. The listening socket is
 * retried for a while if its port is still taken (http_server.c,
 * listen_retry(), says why).
 *
 * Each connection receives through a stream (weft_stream_open()): one
 * multishot receive per connection, armed once, and each message arrives
 * in a buffer of the runtime's (a lease), written back and released. -r
 * receives with weft_recv() into the task's own buffer instead, -l with
 * weft_recv_lease() (a request per message, no buffer while waiting).
 *
 * The accept loop takes connections from a listener (weft_listener_open()):
 * one multishot accept stays armed and queues up to WEFT_LISTENER_BACKLOG
 * new connections ahead of the loop. -A accepts with weft_accept() instead,
 * a request per connection.
 *
 *   asyncio:                                  weft:
 *     server = await asyncio.start_server(...)  weft_tcp_listen + accept loop
 *     data = await reader.read(n)               weft_stream_recv()
 *     writer.write(data); await writer.drain()  weft_write_all()
 */
#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

#define BUF_SIZE 16384

static const char *addr;          /* NULL: any IPv4 address */
static uint16_t port;             /* 0: any free port */
static unsigned long limit;       /* -n: 0 means serve forever */
static atomic_ulong served;       /* connections finished */
static uint64_t idle_ns = 60 * WEFT_NSEC_PER_SEC;
static bool lease;                /* -l */
static bool stream = true;        /* not -r, not -l */
static bool plain_accept;         /* -A */

/* One connection: echo until end of stream or an error, then close. */
static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	weft_stream *st = NULL;
	char buf[BUF_SIZE];

	if (stream && weft_stream_open(&st, fd) < 0) {
		weft_close(fd);
		return NULL;
	}
	for (;;) {
		uint64_t saved = weft_timeout_begin(idle_ns);
		struct weft_lease l = { 0 };
		ssize_t n = st	    ? weft_stream_recv(st, &l)
			    : lease ? weft_recv_lease(fd, &l, 0)
				    : weft_recv(fd, buf, sizeof buf, 0);

		/* 0: peer closed; <0: reset, idle too long, cancelled... */
		if (n > 0 && weft_write_all(fd, l.data ? l.data : buf,
					    (size_t)n, -1) < 0)
			n = -1; /* not read for idle_ns, reset, ... */
		if (l.data)
			weft_lease_release(&l);
		weft_timeout_end(saved);
		if (n <= 0)
			break;
	}
	if (st)
		weft_stream_close(st); /* before the descriptor */
	weft_close(fd);
	atomic_fetch_add_explicit(&served, 1, memory_order_relaxed);
	return NULL;
}

static void *amain(void *arg)
{
	struct weft_spawn_opts opts = { .name = "echo-conn",
					.flags = WEFT_SPAWN_DETACHED };
	unsigned long accepted = 0;
	weft_listener *ls = NULL;
	bool stopped = false;
	int lfd, err = 0;

	(void)arg;
	lfd = -EADDRINUSE;
	for (int i = 0; i < 100 && lfd == -EADDRINUSE; i++) {
		if (i)
			weft_sleep_ms(20);
		lfd = weft_tcp_listen(addr, port, 1024, WEFT_SO_NODELAY);
	}
	if (lfd < 0) {
		fprintf(stderr, "echo_server: listen: %s\n",
			weft_strerror(lfd));
		return (void *)1;
	}
	if (!plain_accept && (err = weft_listener_open(&ls, lfd, 0)) < 0) {
		fprintf(stderr, "echo_server: listener: %s\n",
			weft_strerror(err));
		weft_close(lfd);
		return (void *)1;
	}
	printf("listening on port %d\n", weft_local_port(lfd));
	fflush(stdout);

	while (limit == 0 || accepted < limit) {
		int cfd = ls ? weft_listener_accept(ls, NULL, NULL, 0)
			     : weft_accept(lfd, NULL, NULL, 0);

		if (cfd == -ECANCELED) {
			stopped = true; /* weft_stop(): SIGINT or SIGTERM */
			break;
		}
		if (cfd == -EINTR || cfd == -ECONNABORTED)
			continue;
		if (cfd == -EMFILE || cfd == -ENFILE || cfd == -ENOBUFS ||
		    cfd == -ENOMEM) {
			/* Out of descriptors or memory: let connections
			 * finish rather than spin. */
			fprintf(stderr, "echo_server: accept: %s\n",
				weft_strerror(cfd));
			weft_sleep_ms(10);
			continue;
		}
		if (cfd < 0) {
			fprintf(stderr, "echo_server: accept: %s\n",
				weft_strerror(cfd));
			err = 1;
			break;
		}
		/* The fd travels in the argument; the task owns it now. */
		int e = weft_spawn_opts(NULL, conn_main, (void *)(intptr_t)cfd,
					&opts);
		if (e < 0) {
			fprintf(stderr, "echo_server: spawn: %s\n",
				weft_strerror(e));
			weft_close(cfd);
			continue;
		}
		accepted++;
	}
	if (ls)
		weft_listener_close(ls); /* before the descriptor */
	weft_close(lfd);

	/* -n: wait for the last connections to be served to completion. */
	while (!err && !stopped && limit != 0 &&
	       atomic_load_explicit(&served, memory_order_relaxed) < limit)
		if (weft_sleep_ms(5) == -ECANCELED)
			break;
	fprintf(stderr, "echo_server: %lu connections served\n",
		atomic_load_explicit(&served, memory_order_relaxed));
	return err ? (void *)1 : NULL;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-p PORT] [-a ADDR] [-w WORKERS] [-n CONNECTIONS] "
		"[-i IDLE_SECONDS] [-r | -l] [-A]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { .flags = WEFT_RUN_STOP_ON_SIGNALS };
	void *res = NULL;
	int opt, err;

	while ((opt = getopt(argc, argv, "p:a:w:n:i:lrAh")) != -1) {
		switch (opt) {
		case 'p':
			port = (uint16_t)strtoul(optarg, NULL, 10);
			break;
		case 'a':
			addr = optarg;
			break;
		case 'w':
			cfg.workers = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			limit = strtoul(optarg, NULL, 10);
			break;
		case 'i':
			idle_ns = (uint64_t)(strtod(optarg, NULL) *
					     (double)WEFT_NSEC_PER_SEC);
			break;
		case 'l':
			lease = true;
			stream = false;
			break;
		case 'r':
			stream = false;
			break;
		case 'A':
			plain_accept = true;
			break;
		default:
			usage(argv[0]);
		}
	}
	if (optind != argc)
		usage(argv[0]);

	/* -ECANCELED: stopped by a signal, main cancelled, a clean end. */
	err = weft_run(amain, NULL, &cfg, &res);
	if (err < 0 && err != -ECANCELED) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
