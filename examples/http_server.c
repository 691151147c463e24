/*
 * A minimal HTTP/1.1 server: every request gets "Hello, World!". One task
 * accepts; each connection gets a detached task that reads requests into
 * its own buffer, answers every complete request found there (pipelined
 * requests included) and sends the answers of one read in one write (a
 * weft_writer gathers them).
 *
 *   http_server [-p PORT] [-a ADDR] [-w WORKERS] [-i IDLE_SECONDS]
 *               [-H HEAD_SECONDS] [-r] [-A]
 *
 * What it checks, and nothing more:
 *   - the request line is METHOD SP TARGET SP HTTP/1.x CRLF, and each
 *     header line is NAME ":" VALUE; otherwise 400 and close (empty lines
 *     before the request line are skipped, as RFC 9112 advises);
 *   - no NUL, no CR without LF after it and no LF without CR before it
 *     anywhere in the header block, and no other control character in a
 *     header value (RFC 9112: a bare LF read as a line end by one parser
 *     and as part of a value by another is how requests are smuggled past
 *     a proxy); otherwise 400 and close, as soon as the bad byte arrives;
 *   - the header block (request line to the blank line) is at most 8 KiB;
 *     otherwise 400 and close;
 *   - a body announced by Content-Length is skipped; Transfer-Encoding
 *     (chunked bodies) is refused with 400, since it cannot be skipped
 *     without a chunk parser;
 *   - "Connection: close" (or HTTP/1.0 without "Connection: keep-alive")
 *     closes after the answer; HEAD gets the headers only.
 * GET /metrics answers with the runtime's metrics (weft_metrics()) in
 * Prometheus' text format (docs/debugging.md); every other
 * target gets "Hello, World!".
 * Deadlines, each a deadline scope around the calls it bounds, so that no
 * client can hold a connection and its memory for long:
 *   - idle (-i, default 10 s): no request begins, no body byte comes, or
 *     the client reads none of our answers for that long: closed;
 *   - head (-H, default 10 s): a request head must be complete this long
 *     after its first byte, however slowly it keeps coming (slowloris).
 * SIGINT or SIGTERM stops the server (WEFT_RUN_STOP_ON_SIGNALS: weft turns
 * the signal into weft_stop(), which cancels main, so the accept returns
 * -ECANCELED); a stop is a clean end: exit status 0. The listening socket
 * is retried for a while if its port is still taken (see listen_retry()).
 *
 * Each connection receives through a stream (weft_stream_open()): one
 * multishot receive per connection, armed once, instead of a request per
 * read; the bytes are copied from each lease into the connection's buffer
 * (stream_read()). -r receives with weft_recv() straight into that buffer
 * instead.
 *
 * The accept loop takes connections from a listener (weft_listener_open()):
 * one multishot accept stays armed and queues up to WEFT_LISTENER_BACKLOG
 * new connections ahead of the loop. -A accepts with weft_accept() instead,
 * a request per connection.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <weft.h>

#define MAX_HEADER 8192          /* longest header block accepted */
#define IN_CAP (2 * MAX_HEADER)  /* request buffer: always >= 8 KiB free */
#define OUT_CAP 16384            /* answers batched per write */
#define LINGER_NS (2 * WEFT_NSEC_PER_SEC) /* see linger_close() */
#define LINGER_MAX (1u << 20)

static const char ok_resp[] = "HTTP/1.1 200 OK\r\n"
			      "Content-Length: 13\r\n"
			      "Content-Type: text/plain\r\n"
			      "\r\n"
			      "Hello, World!";
#define OK_HEAD_LEN (sizeof ok_resp - 1 - 13) /* without the body */
static const char bad_resp[] = "HTTP/1.1 400 Bad Request\r\n"
			       "Content-Length: 0\r\n"
			       "Connection: close\r\n"
			       "\r\n";

static const char *addr;
static uint16_t port;
static uint64_t idle_ns = 10 * WEFT_NSEC_PER_SEC;
static bool use_stream = true; /* not -r */
static bool plain_accept;      /* -A */
static uint64_t head_ns = 10 * WEFT_NSEC_PER_SEC;

/* ---- parsing ---------------------------------------------------------- */

/* RFC 9110 token characters. */
static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool name_is(const char *p, size_t len, const char *name)
{
	return strlen(name) == len && strncasecmp(p, name, len) == 0;
}

/* Does the comma-separated list v[0..len) hold `token`? */
static bool list_has(const char *v, size_t len, const char *token)
{
	size_t tl = strlen(token);
	size_t i = 0;

	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < len && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
			return true;
	}
	return false;
}

struct request {
	bool head;      /* HEAD: answer without a body */
	bool close;     /* close the connection after answering */
	uint64_t body;  /* Content-Length to skip */
	bool metrics;   /* the target is /metrics */
};

/*
 * Parses the header block p[0..len), which ends with CRLF CRLF. Returns
 * false when it is malformed.
 */
static bool parse_request(const char *p, size_t len, struct request *rq)
{
	const char *end = p + len, *q = p;
	bool have_cl = false, keep_alive = false, close_tok = false;
	int minor;

	/* METHOD SP */
	while (q < end && is_tchar((unsigned char)*q))
		q++;
	if (q == p || q >= end || *q != ' ')
		return false;
	rq->head = (q - p == 4 && memcmp(p, "HEAD", 4) == 0);
	/* TARGET SP: visible characters */
	const char *t = ++q;
	while (q < end && (unsigned char)*q > 0x20 && *q != 0x7f)
		q++;
	if (q == t || q >= end || *q != ' ')
		return false;
	rq->metrics = (q - t == 8 || (q - t > 8 && t[8] == '?')) &&
		      memcmp(t, "/metrics", 8) == 0;
	q++;
	/* HTTP/1.x CRLF */
	if (end - q < 10 || memcmp(q, "HTTP/1.", 7) != 0 || q[7] < '0' ||
	    q[7] > '9' || q[8] != '\r' || q[9] != '\n')
		return false;
	minor = q[7] - '0';
	q += 10;

	/* Header lines up to the empty line that ends the block. */
	rq->body = 0;
	while (!(q[0] == '\r' && q[1] == '\n')) {
		const char *eol = memchr(q, '\r', (size_t)(end - q));
		if (!eol || eol[1] != '\n')
			return false;
		const char *n = q;
		while (q < eol && is_tchar((unsigned char)*q))
			q++;
		if (q == n || *q != ':') /* also refuses obs-fold lines */
			return false;
		size_t nlen = (size_t)(q - n);
		const char *v = q + 1, *ve = eol;
		for (const char *x = v; x < ve; x++)
			if (((unsigned char)*x < 0x20 && *x != '\t') ||
			    *x == 0x7f)
				return false; /* NUL, bare LF, other controls */
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t vlen = (size_t)(ve - v);

		if (name_is(n, nlen, "content-length")) {
			uint64_t cl = 0;
			if (vlen == 0 || vlen > 18)
				return false;
			for (size_t i = 0; i < vlen; i++) {
				if (v[i] < '0' || v[i] > '9')
					return false;
				cl = cl * 10 + (uint64_t)(v[i] - '0');
			}
			if (have_cl && cl != rq->body)
				return false; /* conflicting lengths */
			have_cl = true;
			rq->body = cl;
		} else if (name_is(n, nlen, "transfer-encoding")) {
			return false;
		} else if (name_is(n, nlen, "connection")) {
			close_tok |= list_has(v, vlen, "close");
			keep_alive |= list_has(v, vlen, "keep-alive");
		}
		q = eol + 2;
	}
	rq->close = close_tok || (minor == 0 && !keep_alive);
	return true;
}

/*
 * Whether p[0..len), the start of a header block, has a line break that
 * is not CRLF or a NUL: such a head is refused as soon as the byte comes,
 * not when (if ever) the blank line does. A CR at the very end may still
 * get its LF.
 */
static bool head_bytes_ok(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\0')
			return false;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return false;
		if (p[i] == '\r' && i + 1 < len && p[i + 1] != '\n')
			return false;
	}
	return true;
}

/* ---- one connection ----------------------------------------------------- */

struct conn {
	int fd;
	size_t start, end; /* unconsumed bytes: in[start..end) */
	struct weft_writer out; /* answers, batched in outbuf */
	uint64_t skip;     /* body bytes still to drop */
	uint64_t head_by;  /* the partial head buffered must be complete by
			    * then (ns); 0: no partial head */
	weft_stream *st;        /* the connection's stream; NULL with -r */
	struct weft_lease pl;   /* a lease not yet all copied */
	size_t ploff;           /* how much of it was */
	char in[IN_CAP];
	char outbuf[OUT_CAP];
};

/* Up to cap bytes from the stream into buf: what is left of the last
 * lease, or a new one; its result as weft_recv()'s. */
static ssize_t stream_read(struct conn *c, char *buf, size_t cap)
{
	size_t k;

	if (!c->pl.data) {
		ssize_t n = weft_stream_recv(c->st, &c->pl);

		if (n <= 0)
			return n;
		c->ploff = 0;
	}
	k = c->pl.len - c->ploff;
	if (k > cap)
		k = cap;
	memcpy(buf, (const char *)c->pl.data + c->ploff, k);
	c->ploff += k;
	if (c->ploff == c->pl.len)
		weft_lease_release(&c->pl); /* empties it */
	return (ssize_t)k;
}

/* Answers gather in the connection's buffered writer and go out in one
 * write per batch of requests read (a flush), or when the buffer is full
 * (the writer then writes what it holds and the new answer together). A
 * client that does not read our answers for idle_ns is dropped (a
 * pipelining client that never reads kept its connection for ever): every
 * write sits in a deadline scope. */
static int flush(struct conn *c)
{
	uint64_t saved;
	int err;

	if (!weft_writer_buffered(&c->out))
		return 0;
	saved = weft_timeout_begin(idle_ns);
	err = weft_writer_flush(&c->out);
	weft_timeout_end(saved);
	return err;
}

static int queue(struct conn *c, const char *p, size_t len)
{
	uint64_t saved;
	int err;

	if (weft_writer_buffered(&c->out) + len <= OUT_CAP)
		return weft_writer_write(&c->out, p, len); /* no write */
	saved = weft_timeout_begin(idle_ns);
	err = weft_writer_write(&c->out, p, len);
	weft_timeout_end(saved);
	return err < 0 ? -1 : 0;
}

/* ---- /metrics ---------------------------------------------------------- */

struct text {
	char *p;
	size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len >= t->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	t->len += n > 0 ? (size_t)n : 0;
	if (t->len > t->cap)
		t->len = t->cap; /* cut: the caller sees len == cap */
}

static void metric(struct text *t, const char *name, const char *type,
		   const char *help, uint64_t v)
{
	put(t, "# HELP weft_%s %s\n# TYPE weft_%s %s\nweft_%s %llu\n", name,
	    help, name, type, name, (unsigned long long)v);
}

static const char *const io_kind[WEFT_IO_KINDS] = {
	"recv", "send", "accept", "connect", "read", "write", "poll", "other"
};

/* The runtime's metrics in Prometheus' text exposition format 0.0.4. */
static void metrics_text(struct text *t, const struct weft_metrics *m)
{
	uint64_t cum = 0, n = 0;
	unsigned i;

	metric(t, "tasks_spawned_total", "counter", "Tasks spawned.",
	       m->tasks_spawned);
	metric(t, "tasks_finished_total", "counter", "Tasks that ended.",
	       m->tasks_finished);
	metric(t, "tasks_alive", "gauge", "Tasks spawned and not yet ended.",
	       m->tasks_spawned - m->tasks_finished);
	metric(t, "switches_total", "counter", "Tasks switched in.",
	       m->switches);
	metric(t, "steals_total", "counter", "Steals that found work.",
	       m->steals);
	metric(t, "stolen_tasks_total", "counter", "Tasks moved by steals.",
	       m->steal_tasks);
	metric(t, "parks_total", "counter",
	       "Times a worker slept in its reactor.", m->parks);
	metric(t, "wakes_total", "counter",
	       "Sleeps ended by a notify of new work.", m->wakes);
	metric(t, "timers_armed_total", "counter", "Timers started.",
	       m->timers_armed);
	metric(t, "timers_fired_total", "counter", "Timers fired.",
	       m->timers_fired);
	metric(t, "stalls_total", "counter",
	       "Tasks reported for running too long without suspending.",
	       m->stalls);
	metric(t, "inject_queue_depth", "gauge",
	       "Tasks on the shared inject queue.", m->inject_depth);
	metric(t, "local_queue_depth", "gauge",
	       "Tasks on the workers' local queues.", m->local_depth);
	metric(t, "blocking_threads", "gauge", "Blocking-pool threads.",
	       m->blocking_threads);
	metric(t, "blocking_idle_threads", "gauge",
	       "Blocking-pool threads waiting for a job.", m->blocking_idle);
	metric(t, "blocking_queue_depth", "gauge",
	       "Blocking calls waiting for a thread.", m->blocking_queued);
	metric(t, "workers", "gauge", "Worker threads.", m->workers);
	put(t, "# HELP weft_uptime_seconds Time since the runtime started.\n"
	       "# TYPE weft_uptime_seconds gauge\n"
	       "weft_uptime_seconds %.6f\n",
	    (double)m->uptime_ns / 1e9);
	put(t, "# HELP weft_io_submitted_total I/O calls started, by kind.\n"
	       "# TYPE weft_io_submitted_total counter\n");
	for (i = 0; i < WEFT_IO_KINDS; i++)
		put(t, "weft_io_submitted_total{kind=\"%s\"} %llu\n",
		    io_kind[i], (unsigned long long)m->io_submitted[i]);
	put(t, "# HELP weft_io_completed_total I/O calls returned, by kind.\n"
	       "# TYPE weft_io_completed_total counter\n");
	for (i = 0; i < WEFT_IO_KINDS; i++)
		put(t, "weft_io_completed_total{kind=\"%s\"} %llu\n",
		    io_kind[i], (unsigned long long)m->io_completed[i]);
	put(t, "# HELP weft_io_latency_seconds I/O call latency.\n"
	       "# TYPE weft_io_latency_seconds histogram\n");
	for (i = 0; i < WEFT_METRICS_IO_BUCKETS; i++) {
		cum += m->io_latency[i];
		if (i + 1 < WEFT_METRICS_IO_BUCKETS)
			put(t, "weft_io_latency_seconds_bucket{le=\"%.10g\"} "
			       "%llu\n",
			    (double)(UINT64_C(1) << (10 + i)) / 1e9,
			    (unsigned long long)cum);
	}
	n = cum;
	put(t, "weft_io_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
	       "weft_io_latency_seconds_sum %.9f\n"
	       "weft_io_latency_seconds_count %llu\n",
	    (unsigned long long)n, (double)m->io_latency_sum_ns / 1e9,
	    (unsigned long long)n);
	put(t, "# HELP weft_worker_busy_seconds_total Worker time not asleep.\n"
	       "# TYPE weft_worker_busy_seconds_total counter\n");
	for (i = 0; i < m->workers; i++) {
		struct weft_metrics w = { .size = sizeof(w) };

		if (weft_metrics_worker(NULL, i, &w) == 0)
			put(t, "weft_worker_busy_seconds_total{worker=\"%u\"} "
			       "%.6f\n",
			    i, (double)w.busy_ns / 1e9);
	}
}

/* Queues the /metrics answer (HEAD: its headers). 0, or -1 on a write
 * error. */
static int queue_metrics(struct conn *c, bool head)
{
	struct weft_metrics m = { .size = sizeof(m) };
	struct text body = { 0 };
	char hdr[160];
	int r, hl, mr;

	/* The text grows with the workers (a busy line each, up to 1024
	 * workers): sized for them, so that it is never cut mid-line. */
	mr = weft_metrics(NULL, &m);
	body.cap = 16384 + 96 * (size_t)(mr < 0 ? 0 : m.workers);
	body.p = malloc(body.cap);
	if (!body.p)
		return queue(c, bad_resp, sizeof bad_resp - 1) < 0 ? -1 : 0;
	if (mr < 0)
		put(&body, "# weft_metrics: %s\n", weft_strerror(mr));
	else
		metrics_text(&body, &m);
	if (body.len >= body.cap) {
		/* Cut after all: an error, never half a line. */
		free(body.p);
		return queue(c, bad_resp, sizeof bad_resp - 1) < 0 ? -1 : 0;
	}
	hl = snprintf(hdr, sizeof(hdr),
		      "HTTP/1.1 200 OK\r\n"
		      "Content-Length: %zu\r\n"
		      "Content-Type: text/plain; version=0.0.4; "
		      "charset=utf-8\r\n\r\n",
		      body.len);
	r = queue(c, hdr, (size_t)hl);
	if (r >= 0 && !head)
		r = queue(c, body.p, body.len);
	free(body.p);
	return r < 0 ? -1 : 0;
}

/*
 * Answers every complete request in the buffer. Returns 1 to read more,
 * 0 to close (after flushing), -1 on a write error.
 */
static int serve_buffered(struct conn *c)
{
	for (;;) {
		size_t avail = c->end - c->start;

		if (c->skip) {
			size_t d = c->skip < avail ? (size_t)c->skip : avail;
			c->start += d;
			c->skip -= d;
			if (c->skip)
				return 1;
			avail -= d;
		}
		/* Empty lines before a request line are ignored (RFC 9112,
		 * 2.2: a client may send a CRLF after a body). They start a
		 * head: its deadline bounds a client that sends only those. */
		while (avail >= 2 && c->in[c->start] == '\r' &&
		       c->in[c->start + 1] == '\n') {
			c->start += 2;
			avail -= 2;
			if (!c->head_by)
				c->head_by = weft_now() + head_ns;
		}
		if (avail == 0)
			return 1;

		const char *p = c->in + c->start;
		const char *e = memmem(p, avail, "\r\n\r\n", 4);
		size_t hlen = e ? (size_t)(e - p) + 4 : 0;
		bool bytes_ok = head_bytes_ok(p, e ? hlen : avail);
		if (!e && avail < MAX_HEADER && bytes_ok) {
			/* Incomplete: read more, until head_by at most. */
			if (!c->head_by)
				c->head_by = weft_now() + head_ns;
			return 1;
		}

		struct request rq;
		if (!e || !bytes_ok || hlen > MAX_HEADER ||
		    !parse_request(p, hlen, &rq)) {
			if (queue(c, bad_resp, sizeof bad_resp - 1) < 0)
				return -1;
			return 0;
		}
		c->start += hlen;
		c->head_by = 0;
		c->skip = rq.body;
		if (rq.metrics) {
			if (queue_metrics(c, rq.head) < 0)
				return -1;
		} else if (queue(c, ok_resp, rq.head ? OK_HEAD_LEN
						      : sizeof ok_resp - 1) <
			   0) {
			return -1;
		}
		if (rq.close)
			return 0;
	}
}

/*
 * Closing a socket with unread input makes the kernel send a reset, which
 * can destroy our last answer (the 400) before the client reads it. So
 * when the server is the one closing, it shuts its side down and drains
 * the input for a while first (the "lingering close" of Apache and nginx).
 */
static void linger_close(struct conn *c)
{
	uint64_t saved = weft_timeout_begin(LINGER_NS);
	size_t total = 0;

	if (c->st) { /* what it holds is dropped; the socket drains */
		if (c->pl.data)
			weft_lease_release(&c->pl);
		weft_stream_close(c->st);
		c->st = NULL;
	}

	if (weft_shutdown(c->fd, SHUT_WR) == 0) {
		while (total < LINGER_MAX) {
			ssize_t n = weft_recv(c->fd, c->in, IN_CAP, 0);
			if (n <= 0)
				break;
			total += (size_t)n;
		}
	}
	weft_timeout_end(saved);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;

	c->st = NULL;
	c->pl.data = NULL;
	if (use_stream && weft_stream_open(&c->st, c->fd) < 0) {
		weft_close(c->fd);
		free(c);
		return NULL;
	}
	for (;;) {
		int r = serve_buffered(c);
		if (r < 0)
			break;
		if (r == 0) {
			if (flush(c) == 0)
				linger_close(c);
			break;
		}
		if (flush(c) < 0)
			break;
		/* Keep the unconsumed tail at the front: at most MAX_HEADER
		 * bytes, so the read below always has room. */
		size_t avail = c->end - c->start;
		memmove(c->in, c->in + c->start, avail);
		c->start = 0;
		c->end = avail;

		/* The idle deadline, or the partial head's if sooner. */
		uint64_t by = weft_now() + idle_ns;
		if (c->head_by && c->head_by < by)
			by = c->head_by;
		uint64_t saved = weft_deadline_begin(by);
		ssize_t n = c->st ? stream_read(c, c->in + c->end,
						IN_CAP - c->end)
				  : weft_recv(c->fd, c->in + c->end,
					      IN_CAP - c->end, 0);
		weft_timeout_end(saved);
		if (n <= 0) /* closed, idle too long, reset, ... */
			break;
		c->end += (size_t)n;
	}
	if (c->st) { /* before the descriptor */
		if (c->pl.data)
			weft_lease_release(&c->pl);
		weft_stream_close(c->st);
	}
	weft_close(c->fd);
	free(c);
	return NULL;
}

/* ---- accept loop -------------------------------------------------------- */

/*
 * The listening socket, retried for a while if its port is still taken.
 * After a crash (kill -9) the old process's socket outlives it for a few
 * to a hundred milliseconds, while the kernel tears down its io_uring
 * (whose accept still holds the socket), and SO_REUSEADDR does not let a
 * second socket listen on a port that still has a listener. A supervisor
 * that restarts the server at once must not see it fail, so a busy port
 * is tried again every 20 ms for up to 2 s. In the example, not in
 * weft_tcp_listen(): a port taken by another server for good must fail at
 * once there, and only the program knows it is restarting.
 */
static int listen_retry(void)
{
	int lfd = -EADDRINUSE;

	for (int i = 0; i < 100 && lfd == -EADDRINUSE; i++) {
		if (i)
			weft_sleep_ms(20);
		lfd = weft_tcp_listen(addr, port, 1024, WEFT_SO_NODELAY);
	}
	return lfd;
}

static void *amain(void *arg)
{
	struct weft_spawn_opts opts = { .name = "http-conn",
					.flags = WEFT_SPAWN_DETACHED };
	weft_listener *ls = NULL;
	int lfd, err = 0;

	(void)arg;
	lfd = listen_retry();
	if (lfd < 0) {
		fprintf(stderr, "http_server: listen: %s\n",
			weft_strerror(lfd));
		return (void *)1;
	}
	if (!plain_accept && (err = weft_listener_open(&ls, lfd, 0)) < 0) {
		fprintf(stderr, "http_server: listener: %s\n",
			weft_strerror(err));
		weft_close(lfd);
		return (void *)1;
	}
	printf("listening on port %d\n", weft_local_port(lfd));
	fflush(stdout);

	for (;;) {
		int cfd = ls ? weft_listener_accept(ls, NULL, NULL, 0)
			     : weft_accept(lfd, NULL, NULL, 0);

		if (cfd == -ECANCELED)
			break; /* weft_stop(): SIGINT or SIGTERM */
		if (cfd == -EINTR || cfd == -ECONNABORTED)
			continue;
		if (cfd == -EMFILE || cfd == -ENFILE || cfd == -ENOBUFS ||
		    cfd == -ENOMEM) {
			fprintf(stderr, "http_server: accept: %s\n",
				weft_strerror(cfd));
			weft_sleep_ms(10);
			continue;
		}
		if (cfd < 0) {
			fprintf(stderr, "http_server: accept: %s\n",
				weft_strerror(cfd));
			err = 1;
			break;
		}
		struct conn *c = malloc(sizeof *c);
		if (!c) {
			weft_close(cfd);
			continue;
		}
		c->fd = cfd;
		c->start = c->end = 0;
		weft_writer_init(&c->out, cfd, c->outbuf, sizeof c->outbuf);
		c->skip = 0;
		c->head_by = 0;
		int e = weft_spawn_opts(NULL, conn_main, c, &opts);
		if (e < 0) {
			fprintf(stderr, "http_server: spawn: %s\n",
				weft_strerror(e));
			weft_close(cfd);
			free(c);
		}
	}
	if (ls)
		weft_listener_close(ls); /* before the descriptor */
	weft_close(lfd);
	return err ? (void *)1 : NULL;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-p PORT] [-a ADDR] [-w WORKERS] [-i IDLE_SECONDS] "
		"[-H HEAD_SECONDS] [-r] [-A]\n",
		prog);
	exit(2);
}

static uint64_t seconds(const char *s)
{
	return (uint64_t)(strtod(s, NULL) * (double)WEFT_NSEC_PER_SEC);
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { .flags = WEFT_RUN_STOP_ON_SIGNALS };
	void *res = NULL;
	int opt, err;

	while ((opt = getopt(argc, argv, "p:a:w:i:H:rAh")) != -1) {
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
		case 'i':
			idle_ns = seconds(optarg);
			break;
		case 'r':
			use_stream = false;
			break;
		case 'A':
			plain_accept = true;
			break;
		case 'H':
			head_ns = seconds(optarg);
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
