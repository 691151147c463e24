/*
 * Scale: ten thousand connections open at once, accepted through a
 * listener (multishot accept) and each served by a task that receives
 * through a stream (multishot receive into its worker's buffer ring).
 * Each round the client writes on every connection before it reads any
 * echo, so 10,000 messages meet rings of 256 buffers a worker: receives
 * wait for buffers or fall back (the rings run dry tens of thousands of
 * times a run), and none may fail, lose, repeat or misplace a byte.
 *
 * The client is tests/conn_load.c, a program of its own on plain epoll:
 * its 10,000 descriptors do not count against this process's
 * RLIMIT_NOFILE (a hard limit of 20,000 where CI runs). A suite of its
 * own, so that tests/run runs it alone: for a second or two it takes
 * both CPUs, and timing tests beside it (test_net's deadlines) would
 * measure that.
 */
#include <sys/resource.h>

#include "weft_test.h"

WT_SUITE(scale, 120);

#if defined(__SANITIZE_THREAD__)
/* TSan counts every task stack as a fiber, and fibers as threads, which
 * it limits to 8128 ("Thread limit exceeded. Dying."). */
#define CONNS 5000
#else
#define CONNS 10000
#endif
#define ROUNDS 3
#define SIZE 200

struct scale {
	int lfd, port;
	weft_task *handlers[CONNS];
	atomic_long served; /* bytes echoed by the handlers */
	char out[256];      /* the client's report line */
	int code;           /* its exit status */
};

struct conn {
	struct scale *s;
	int fd;
};

static void *echo(void *arg)
{
	struct conn c = *(struct conn *)arg;
	weft_stream *st;
	ssize_t n;

	free(arg);
	if (!WT_CHECK_EQ(weft_stream_open(&st, c.fd), 0)) {
		weft_close(c.fd);
		return NULL;
	}
	for (;;) {
		struct weft_lease l;

		n = weft_stream_recv(st, &l);
		if (n <= 0)
			break;
		n = weft_write_all(c.fd, l.data, l.len, -1) == (ssize_t)l.len
			    ? n
			    : -EIO;
		WT_CHECK_EQ(weft_lease_release(&l), 0);
		if (!WT_CHECK(n > 0))
			break;
		atomic_fetch_add(&c.s->served, n);
	}
	WT_CHECK_EQ(n, 0); /* the client's end of stream */
	WT_CHECK_EQ(weft_stream_close(st), 0);
	WT_CHECK_EQ(weft_close(c.fd), 0);
	return NULL;
}

static void *acceptor(void *arg)
{
	struct scale *s = arg;
	weft_listener *l;

	/* A listener still open when this task ends (an early return) is
	 * closed then. */
	if (!WT_CHECK_EQ(weft_listener_open(&l, s->lfd, 0), 0))
		return NULL;
	for (int i = 0; i < CONNS; i++) {
		struct conn *c = malloc(sizeof(*c));
		int fd = weft_listener_accept(l, NULL, NULL, 0);

		if (!WT_CHECK(fd >= 0) || !WT_CHECK(c != NULL)) {
			free(c);
			return NULL;
		}
		c->s = s;
		c->fd = fd;
		s->handlers[i] = weft_spawn(echo, c);
		WT_CHECK(s->handlers[i] != NULL);
	}
	WT_CHECK_EQ(weft_listener_close(l), 0);
	WT_CHECK_EQ(weft_gather(s->handlers, CONNS, NULL), 0);
	for (int i = 0; i < CONNS; i++)
		weft_task_release(s->handlers[i]);
	return NULL;
}

static void *scale_main(void *arg)
{
	struct scale *s = arg;
	char port[16], conns[16], rounds[16], size[16], secs[16];
	char *argv[] = { WT_CONN_LOAD, port, conns, rounds, size, secs, NULL };
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT };
	size_t got = 0;
	weft_task *acc;
	weft_proc *p;
	ssize_t n;

	s->code = -1;
	s->lfd = weft_tcp_listen("127.0.0.1", 0, 4096, 0);
	if (!WT_CHECK(s->lfd >= 0))
		return NULL;
	s->port = weft_local_port(s->lfd);
	snprintf(port, sizeof(port), "%d", s->port);
	snprintf(conns, sizeof(conns), "%d", CONNS);
	snprintf(rounds, sizeof(rounds), "%d", ROUNDS);
	snprintf(size, sizeof(size), "%d", SIZE);
	snprintf(secs, sizeof(secs), "%d", 30 * WT_SLOW);
	acc = weft_spawn(acceptor, s);
	if (WT_CHECK_EQ(weft_proc_spawn(&p, argv, &o), 0)) {
		while (got < sizeof(s->out) - 1 &&
		       (n = weft_read(weft_proc_stdout(p), s->out + got,
				      sizeof(s->out) - 1 - got, -1)) > 0)
			got += (size_t)n;
		WT_CHECK_EQ(weft_proc_wait(p, &s->code), 0);
		weft_proc_destroy(p);
	}
	/* A client that failed leaves the acceptor waiting for connections
	 * that will not come: the first failed check is then this one (1: a
	 * connection failed or a byte differed, 2: past its deadline). */
	if (!WT_CHECK_EQ(s->code, 0)) {
		fprintf(stderr, "conn_load exited with %d: %s\n", s->code,
			s->out);
		weft_cancel(acc);
	}
	weft_await(acc, NULL);
	weft_task_release(acc);
	WT_CHECK_EQ(weft_close(s->lfd), 0);
	return NULL;
}

static void scale_run(unsigned workers)
{
	struct scale *s = calloc(1, sizeof(*s));
	const long bytes = (long)CONNS * ROUNDS * SIZE;
	uint64_t t0 = wt_now_ns();
	int fds = fd_count();

	cr_assert(s != NULL);
	wt_run(scale_main, s, workers);
	cr_log_info("workers=%u: %.1f ms; the client says: %s", workers,
		    (double)(wt_now_ns() - t0) / 1e6, s->out);
	cr_assert_eq(atomic_load(&s->served), bytes,
		     "workers=%u: %ld of %ld bytes echoed", workers,
		     atomic_load(&s->served), bytes);
	cr_assert_eq(fd_count(), fds, "descriptors leaked");
	free(s);
}

Test(scale, ten_thousand_connections_on_a_listener_and_streams_echo_every_byte,
     .timeout = WT_TIMEOUT(90))
{
	struct rlimit rl;
	rlim_t need = CONNS + 256;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < need) {
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
			cr_skip_test("RLIMIT_NOFILE hard limit %llu < %llu "
				     "needed", (unsigned long long)rl.rlim_max,
				     (unsigned long long)need);
		rl.rlim_cur = rl.rlim_max;
		cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	scale_run(2);
	scale_run(4);
}
