/*
 * A multi-worker TCP echo server: one task accepts, and every connection
 * gets a detached task of its own that sends back whatever it receives
 * until the peer closes. The connection tasks spread over all workers
 * (stolen like any others), so the server uses every core without any
 * threading code here.
 *
 *   echo_server [-p PORT] [-a ADDR] [-w WORKERS] [-n CONNECTIONS]
 *
 * -p 0 (the default) takes any free port; the line `listening on port N`
 * says which. -n N exits once N connections have been served to
 * completion (for tests). SIGINT or SIGTERM stops the server: weft has no
 * signal integration yet, so the handler only sets a flag, and the accept
 * loop waits in 200 ms slices (a deadline scope around weft_accept) to
 * look at it. Connection tasks still open when main returns are dropped
 * by weft_run, as the runtime promises.
 *
 *   asyncio:                                  weft:
 *     server = await asyncio.start_server(...)  weft_tcp_listen + accept loop
 *     data = await reader.read(n)               weft_recv()
 *     writer.write(data); await writer.drain()  weft_write_all()
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

#define BUF_SIZE 16384
#define ACCEPT_SLICE_NS (200 * WEFT_NSEC_PER_MSEC)

static volatile sig_atomic_t stop;
static const char *addr;          /* NULL: any IPv4 address */
static uint16_t port;             /* 0: any free port */
static unsigned long limit;       /* -n: 0 means serve forever */
static atomic_ulong served;       /* connections finished */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* One connection: echo until end of stream or an error, then close. */
static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[BUF_SIZE];

	for (;;) {
		ssize_t n = weft_recv(fd, buf, sizeof buf, 0);
		if (n <= 0) /* 0: peer closed; <0: reset, cancelled, ... */
			break;
		if (weft_write_all(fd, buf, (size_t)n, -1) < 0)
			break;
	}
	weft_close(fd);
	atomic_fetch_add_explicit(&served, 1, memory_order_relaxed);
	return NULL;
}

static void *amain(void *arg)
{
	struct weft_spawn_opts opts = { .name = "echo-conn",
					.flags = WEFT_SPAWN_DETACHED };
	unsigned long accepted = 0;
	int lfd, err = 0;

	(void)arg;
	lfd = weft_tcp_listen(addr, port, 1024, WEFT_SO_NODELAY);
	if (lfd < 0) {
		fprintf(stderr, "echo_server: listen: %s\n",
			weft_strerror(lfd));
		return (void *)1;
	}
	printf("listening on port %d\n", weft_local_port(lfd));
	fflush(stdout);

	while (!stop && (limit == 0 || accepted < limit)) {
		uint64_t saved = weft_timeout_begin(ACCEPT_SLICE_NS);
		int cfd = weft_accept(lfd, NULL, NULL, 0);
		weft_timeout_end(saved);

		if (cfd == -ETIMEDOUT || cfd == -EINTR ||
		    cfd == -ECONNABORTED)
			continue; /* look at the stop flag, then go on */
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
	weft_close(lfd);

	/* -n: wait for the last connections to be served to completion. */
	while (!err && !stop && limit != 0 &&
	       atomic_load_explicit(&served, memory_order_relaxed) < limit)
		weft_sleep_ms(5);
	fprintf(stderr, "echo_server: %lu connections served\n",
		atomic_load_explicit(&served, memory_order_relaxed));
	return err ? (void *)1 : NULL;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-p PORT] [-a ADDR] [-w WORKERS] [-n CONNECTIONS]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	void *res = NULL;
	int opt, err;

	while ((opt = getopt(argc, argv, "p:a:w:n:h")) != -1) {
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
		default:
			usage(argv[0]);
		}
	}
	if (optind != argc)
		usage(argv[0]);

	/* SA_RESTART so that no worker sees EINTR from the handler. */
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	err = weft_run(amain, NULL, &cfg, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
