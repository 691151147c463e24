/*
 * Scale: ten thousand connections open at once, accepted through a
 * listener (multishot accept) and each served by a task that receives
 * through a stream (multishot receive into its worker's buffer ring).
 * Each round the client writes on every connection before it reads any
 * echo, so 10,000 messages meet rings of 256 buffers a worker: receives
 * wait for buffers or fall back (the rings run dry tens of thousands of
 * times a run), and none may fail, lose, repeat or misplace a byte. And
 * the same with every tenth connection reset by the client while its last
 * echo is on its way: handlers meet the reset in a receive or a send, and
 * nothing is left behind. And with every receive in a deadline scope of
 * 1-16 ms (hundreds of thousands of timers armed, fired and cancelled in
 * a run, racing the bytes).
 *
 * The client is tests/conn_load.c, a program of its own on plain epoll:
 * its 10,000 descriptors do not count against this process's
 * RLIMIT_NOFILE (a hard limit of 20,000 where CI runs). A suite of its
 * own, so that tests/run runs it alone: for a second or two it takes
 * both CPUs, and timing tests beside it (test_net's deadlines) would
 * measure that.
 */
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
	int reset_every;    /* the client resets every k-th connection */
	bool deadlines;     /* each receive in a scope of 1-16 ms */
	weft_task *handlers[CONNS];
	atomic_long served; /* bytes echoed by the handlers */
	atomic_long ends;   /* handlers that met the client's end of stream */
	atomic_long resets; /* handlers that met a reset (recv or send) */
	atomic_long timeouts; /* receives whose scope ended first */
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
	unsigned k = 0;
	ssize_t n;

	free(arg);
	if (!WT_CHECK_EQ(weft_stream_open(&st, c.fd), 0)) {
		weft_close(c.fd);
		return NULL;
	}
	for (;;) {
		struct weft_lease l;
		ssize_t w;

		if (c.s->deadlines) {
			uint64_t saved = weft_timeout_begin(
				(1 + (k++ * 7 + (unsigned)c.fd) % 16) *
				WEFT_NSEC_PER_MSEC);

			n = weft_stream_recv(st, &l);
			weft_timeout_end(saved);
			if (n == -ETIMEDOUT) {
				atomic_fetch_add(&c.s->timeouts, 1);
				continue;
			}
		} else {
			n = weft_stream_recv(st, &l);
		}
		if (n <= 0)
			break;
		w = weft_write_all(c.fd, l.data, l.len, -1);
		/* Given back on every path, a failed send's too. */
		WT_CHECK_EQ(weft_lease_release(&l), 0);
		if (w != n) {
			n = w < 0 ? w : -EIO;
			break;
		}
		atomic_fetch_add(&c.s->served, n);
	}
	/* The client's end of stream, or its reset: met by the receive, or
	 * by the send of an echo that was under way. */
	if (n == 0)
		atomic_fetch_add(&c.s->ends, 1);
	else if (n == -ECONNRESET || n == -EPIPE)
		atomic_fetch_add(&c.s->resets, 1);
	else
		WT_CHECK_EQ(n, 0);
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
	char port[16], conns[16], rounds[16], size[16], secs[16], every[16];
	char *argv[] = { WT_CONN_LOAD, port,  conns, rounds,
			 size,	       secs,  every, NULL };
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
	snprintf(every, sizeof(every), "%d", s->reset_every);
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

/* One run; reset_every k: the client resets connections 0, k, 2k, ...
 * in the last round, their last message sent and its echo not read. */
static void scale_run(unsigned workers, int reset_every, bool deadlines)
{
	struct scale *s = calloc(1, sizeof(*s));
	const long nreset = reset_every ? (CONNS - 1) / reset_every + 1 : 0;
	const long bytes = (long)CONNS * ROUNDS * SIZE;
	uint64_t t0 = wt_now_ns();
	int fds = fd_count();

	cr_assert(s != NULL);
	s->reset_every = reset_every;
	s->deadlines = deadlines;
	wt_run(scale_main, s, workers);
	cr_log_info("workers=%u: %.1f ms, %ld ends and %ld resets met, %ld "
		    "receives timed out; the client says: %s", workers,
		    (double)(wt_now_ns() - t0) / 1e6, atomic_load(&s->ends),
		    atomic_load(&s->resets), atomic_load(&s->timeouts),
		    s->out);
	/* A reset connection's last echo may have gone out before its
	 * reset came, or not. */
	cr_assert(atomic_load(&s->served) >= bytes - nreset * SIZE &&
			  atomic_load(&s->served) <= bytes,
		  "workers=%u: %ld bytes echoed, want %ld (%ld less at most "
		  "for the resets)", workers, atomic_load(&s->served), bytes,
		  nreset * SIZE);
	cr_assert_eq(atomic_load(&s->resets), nreset,
		     "workers=%u: %ld handlers met a reset, want %ld",
		     workers, atomic_load(&s->resets), nreset);
	cr_assert_eq(atomic_load(&s->ends), CONNS - nreset,
		     "workers=%u: %ld handlers met the end of stream, want "
		     "%ld", workers, atomic_load(&s->ends), CONNS - nreset);
	if (deadlines)
		cr_assert_gt(atomic_load(&s->timeouts), 0,
			     "workers=%u: no receive timed out: the race "
			     "this run is about never ran", workers);
	cr_assert_eq(fd_count(), fds, "descriptors leaked");
	free(s);
}


Test(scale, ten_thousand_connections_on_a_listener_and_streams_echo_every_byte,
     .timeout = WT_TIMEOUT(90))
{
	wt_raise_nofile(CONNS + 256);
	scale_run(2, 0, false);
	scale_run(4, 0, false);
}

/* Every tenth connection reset by the client while its last echo is on
 * its way: the handlers of those meet the reset (in the receive or the
 * send), give their lease back and close; nothing leaks (descriptors;
 * buffers and memory under ASan), and every other connection is served
 * whole. */
Test(scale, ten_thousand_connections_a_tenth_reset_mid_echo_leave_nothing,
     .timeout = WT_TIMEOUT(90))
{
	wt_raise_nofile(CONNS + 256);
	scale_run(2, 10, false);
	scale_run(4, 10, false);
}

/* Every receive of every connection in a deadline scope of 1 to 16 ms:
 * ten thousand timers armed and cancelled per round, many firing while
 * connections wait between rounds, some as their bytes arrive. A receive
 * that timed out leaves what arrives later for the next one: every byte
 * comes back, in order. */
Test(scale, ten_thousand_connections_receiving_under_deadlines_lose_no_byte,
     .timeout = WT_TIMEOUT(90))
{
	wt_raise_nofile(CONNS + 256);
	scale_run(4, 0, true);
}
