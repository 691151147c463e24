/*
 * epoll_http: the plain-epoll HTTP/1.1 server that the weft http benchmark
 * (examples/http_server.c) is compared against. It uses no weft at all.
 * The threading is that of epoll_echo.c: one thread per CPU, each with its
 * own epoll instance and its own SO_REUSEPORT listener on the same port,
 * level-triggered, so the kernel spreads connections and a connection
 * never changes thread.
 *
 * The protocol logic is that of examples/http_server.c, so that the two do
 * the same work per request:
 *  - a request's header block ends at the first "\r\n\r\n" and may be at
 *    most HDR_MAX (8 KiB) bytes, terminator included;
 *  - the request line is METHOD SP TARGET SP "HTTP/1." DIGIT CRLF, and
 *    each header line is NAME ":" VALUE (obs-fold refused);
 *  - a body announced by Content-Length (1 to 18 digits; repeats must
 *    agree) is skipped unread; Transfer-Encoding is refused, as chunked
 *    bodies cannot be skipped without a chunk parser;
 *  - each good request gets the fixed 200 reply below, HEAD its headers
 *    only; the first bad one gets the 400 reply;
 *  - after a 400, "Connection: close", or HTTP/1.0 without
 *    "Connection: keep-alive", the connection is closed (lingering);
 *  - every reply produced from one read, so all replies to pipelined
 *    requests that arrived together, goes out in a single send;
 *  - a connection with no request for -i seconds (default 10) is closed.
 *
 * Buffers: each thread owns one receive buffer and one reply buffer. A
 * connection holds memory only while it has a partial request (under
 * HDR_MAX bytes) or unsent replies after a short send; while replies are
 * pending it waits for EPOLLOUT alone and is not read, so a client that
 * does not read cannot grow the server's memory.
 *
 * Timers: the two timeouts have a fixed length each, so each thread keeps
 * its connections on lists ordered by deadline (a reading connection
 * moves to the tail when it gets data) and epoll_wait sleeps until the
 * earliest head. No timer wheel or heap is needed.
 *
 * Usage: epoll_http [-p PORT] [-t THREADS] [-i IDLE_SECONDS]
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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "epoll_common.h"

#define HDR_MAX		(8 * 1024)
#define READ_SIZE	(64 * 1024)
#define MAX_EVENTS	256
#define LINGER_MS	2000		/* as examples/http_server.c */
#define LINGER_MAX	(1u << 20)	/* bytes drained before giving up */

static const char ok_reply[] =
	"HTTP/1.1 200 OK\r\n"
	"Content-Length: 13\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"Hello, World!";
static const char bad_reply[] =
	"HTTP/1.1 400 Bad Request\r\n"
	"Content-Length: 0\r\n"
	"Connection: close\r\n"
	"\r\n";

#define OK_LEN		(sizeof(ok_reply) - 1)
#define OK_HEAD_LEN	(OK_LEN - 13)	/* HEAD: without the body */
#define BAD_LEN		(sizeof(bad_reply) - 1)

/*
 * The receive buffer holds a leftover partial request (under HDR_MAX
 * bytes) followed by one read. The shortest request, "A B HTTP/1.1\r\n\r\n",
 * is MIN_REQ bytes, which bounds the replies one read can produce; the
 * reply buffer fits them all plus a final 400, so it never overflows.
 */
#define MIN_REQ		16
#define IN_SIZE		(HDR_MAX + READ_SIZE)
#define OUT_SIZE	((IN_SIZE / MIN_REQ) * OK_LEN + BAD_LEN)

/* A connection is on exactly one of its thread's lists, by state. */
struct conn_list {
	struct conn *head;	/* earliest deadline, where ordered */
	struct conn *tail;
};

struct conn {
	int fd;
	bool closing;		/* close once the queued replies are sent */
	bool lingering;		/* write side shut: drain input, then close */
	char *in;		/* leftover partial request, or NULL */
	size_t in_len;		/* bytes in in */
	uint64_t skip;		/* body bytes still to be discarded */
	char *pend;		/* unsent replies after a short send, or NULL */
	size_t pend_off;	/* first unsent byte in pend */
	size_t pend_len;	/* bytes in pend */
	uint64_t deadline;	/* ms: idle or linger limit, as the list says */
	size_t drained;		/* bytes discarded while lingering */
	struct conn_list *list;	/* the list this connection is on */
	struct conn *prev;
	struct conn *next;
};

struct worker {
	pthread_t thread;
	int ep;			/* this thread's epoll instance */
	int lfd;		/* this thread's SO_REUSEPORT listener */
	int spare;		/* reserve fd for the EMFILE trick, or -1 */
	uint64_t now;		/* ms, read once per epoll_wait */
	struct conn_list reading;	/* waiting for requests, by deadline */
	struct conn_list writing;	/* short send: no timeout, as in weft */
	struct conn_list lingering;	/* closing, by deadline */
	char in[IN_SIZE];	/* leftover + one read, being parsed */
	char out[OUT_SIZE];	/* replies produced from that read */
};

/* Tags in epoll_data.ptr for the two fds that are not connections. */
static char listen_tag, stop_tag;

/* Written once by main on SIGINT/SIGTERM; every epoll set watches it. */
static int stop_fd = -1;

static uint64_t idle_ms = 10000;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- request parsing ------------------------------------------------ */

/* RFC 9110 tchar: the characters of a method or header name. */
static bool is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch);
}

static bool name_is(const char *p, size_t len, const char *name)
{
	return strlen(name) == len && !strncasecmp(p, name, len);
}

/* Does the comma-separated list v[0, len) hold token? */
static bool list_has(const char *v, size_t len, const char *token)
{
	size_t tl = strlen(token), i = 0;

	while (i < len) {
		size_t s, e;

		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < len && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tl && !strncasecmp(v + s, token, tl))
			return true;
	}
	return false;
}

struct request {
	bool head;		/* HEAD: reply without the body */
	bool close;		/* close the connection after replying */
	uint64_t body;		/* Content-Length to skip */
};

/*
 * Parse the header block p[0, len), which ends in "\r\n\r\n". Returns
 * false when it is malformed. Mirrors parse_request() in
 * examples/http_server.c check for check.
 */
static bool parse_request(const char *p, size_t len, struct request *rq)
{
	const char *end = p + len, *q = p, *t;
	bool have_cl = false, keep_alive = false, close_tok = false;
	int minor;

	/* METHOD SP */
	while (q < end && is_tchar((unsigned char)*q))
		q++;
	if (q == p || q >= end || *q != ' ')
		return false;
	rq->head = q - p == 4 && !memcmp(p, "HEAD", 4);
	/* TARGET SP: visible characters */
	t = ++q;
	while (q < end && (unsigned char)*q > 0x20 && *q != 0x7f)
		q++;
	if (q == t || q >= end || *q != ' ')
		return false;
	q++;
	/* HTTP/1.x CRLF */
	if (end - q < 10 || memcmp(q, "HTTP/1.", 7) || q[7] < '0' ||
	    q[7] > '9' || q[8] != '\r' || q[9] != '\n')
		return false;
	minor = q[7] - '0';
	q += 10;

	/* Header lines, up to the empty line that ends the block. */
	rq->body = 0;
	while (!(q[0] == '\r' && q[1] == '\n')) {
		const char *eol = memchr(q, '\r', (size_t)(end - q));
		const char *n = q, *v, *ve;
		size_t nlen, vlen;

		if (!eol || eol[1] != '\n')
			return false;
		while (q < eol && is_tchar((unsigned char)*q))
			q++;
		if (q == n || *q != ':')	/* also refuses obs-fold */
			return false;
		nlen = (size_t)(q - n);
		v = q + 1;
		ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		vlen = (size_t)(ve - v);

		if (name_is(n, nlen, "content-length")) {
			uint64_t cl = 0;

			/* 18 digits cannot overflow 64 bits. */
			if (vlen == 0 || vlen > 18)
				return false;
			for (size_t i = 0; i < vlen; i++) {
				if (v[i] < '0' || v[i] > '9')
					return false;
				cl = cl * 10 + (uint64_t)(v[i] - '0');
			}
			if (have_cl && cl != rq->body)
				return false;	/* conflicting lengths */
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
 * Answer every complete request in buf[0, len) into w->out. Returns the
 * reply bytes written; *used says how much of buf was consumed, the rest
 * being the start of a request not yet complete. Sets c->closing when the
 * connection must close once these replies are sent, and then stops.
 */
static size_t serve(struct worker *w, struct conn *c, const char *buf,
		    size_t len, size_t *used)
{
	size_t pos = 0, out = 0;

	while (pos < len) {
		const char *h = buf + pos, *e;
		size_t avail = len - pos, hlen;
		struct request rq;

		if (c->skip) {
			size_t k = c->skip < avail ? (size_t)c->skip : avail;

			c->skip -= k;
			pos += k;
			continue;
		}
		/*
		 * Searching only the first HDR_MAX bytes finds a terminator
		 * only if the whole block fits the limit.
		 */
		e = memmem(h, avail < HDR_MAX ? avail : HDR_MAX, "\r\n\r\n", 4);
		if (!e && avail < HDR_MAX)
			break;	/* incomplete: keep it for the next read */
		hlen = e ? (size_t)(e + 4 - h) : 0;
		if (!e || !parse_request(h, hlen, &rq)) {
			memcpy(w->out + out, bad_reply, BAD_LEN);
			c->closing = true;
			*used = len;
			return out + BAD_LEN;
		}
		memcpy(w->out + out, ok_reply, rq.head ? OK_HEAD_LEN : OK_LEN);
		out += rq.head ? OK_HEAD_LEN : OK_LEN;
		pos += hlen;
		c->skip = rq.body;
		if (rq.close) {
			c->closing = true;
			break;
		}
	}
	*used = c->closing ? len : pos;
	return out;
}

/* ---- connection lists ------------------------------------------------- */

static void list_del(struct conn *c)
{
	struct conn_list *l = c->list;

	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->list = NULL;
}

static void list_add_tail(struct conn_list *l, struct conn *c)
{
	c->list = l;
	c->next = NULL;
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

/* Put c on list l, last, with the given deadline (ms). */
static void list_move(struct conn_list *l, struct conn *c, uint64_t deadline)
{
	if (c->list)
		list_del(c);
	c->deadline = deadline;
	list_add_tail(l, c);
}

/* ---- connections ---------------------------------------------------- */

static int want(struct worker *w, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	return epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(struct conn *c)
{
	list_del(c);
	close(c->fd);	/* also removes it from the epoll set */
	free(c->in);
	free(c->pend);
	free(c);
}

/*
 * Closing a socket with unread input makes the kernel send a reset, which
 * can destroy our last reply (the 400) before the client reads it. So the
 * server shuts its side down and drains the input for up to LINGER_MS or
 * LINGER_MAX bytes first (the "lingering close" of Apache and nginx, and
 * of examples/http_server.c). Returns -1 when the connection can be
 * closed at once.
 */
static int linger_start(struct worker *w, struct conn *c)
{
	if (shutdown(c->fd, SHUT_WR) < 0 || want(w, c, EPOLLIN) < 0)
		return -1;
	c->lingering = true;
	list_move(&w->lingering, c, w->now + LINGER_MS);
	return 0;
}

/* EPOLLIN while lingering: discard; returns -1 to close. */
static int on_linger(struct worker *w, struct conn *c)
{
	ssize_t n = recv(c->fd, w->in, IN_SIZE, 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	c->drained += (size_t)n;
	return c->drained < LINGER_MAX ? 0 : -1;
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

/* All replies are out: go on reading, or close. */
static int replies_sent(struct worker *w, struct conn *c)
{
	if (c->closing)
		return linger_start(w, c);
	if (c->list != &w->reading)
		list_move(&w->reading, c, w->now + idle_ms);
	return 0;
}

/* EPOLLIN: read once, answer what is complete; returns -1 to close. */
static int on_readable(struct worker *w, struct conn *c)
{
	size_t have, used, out;
	ssize_t n, sent;

	/* Read behind the space the leftover will take, then put it there. */
	do
		n = recv(c->fd, w->in + c->in_len, READ_SIZE, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -1;
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
	/* Any data restarts the idle clock, as each weft_recv() does. */
	list_move(&w->reading, c, w->now + idle_ms);
	have = c->in_len + (size_t)n;
	if (c->in) {
		memcpy(w->in, c->in, c->in_len);
		free(c->in);
		c->in = NULL;
		c->in_len = 0;
	}

	out = serve(w, c, w->in, have, &used);
	if (used < have) {
		c->in_len = have - used;
		c->in = malloc(c->in_len);
		if (!c->in)
			return -1;
		memcpy(c->in, w->in + used, c->in_len);
	}
	if (!out)
		return 0;	/* not a whole request yet */

	sent = send_some(c->fd, w->out, out);
	if (sent < 0)
		return -1;
	if ((size_t)sent == out)
		return replies_sent(w, c);

	/*
	 * Short send: keep the rest and stop reading until it is gone. Like
	 * weft_write_all() in the weft server, the wait has no timeout.
	 */
	c->pend_len = out - (size_t)sent;
	c->pend_off = 0;
	c->pend = malloc(c->pend_len);
	if (!c->pend)
		return -1;
	memcpy(c->pend, w->out + sent, c->pend_len);
	list_move(&w->writing, c, 0);
	return want(w, c, EPOLLOUT);
}

/* EPOLLOUT: flush the remainder; once it is gone, read again or close. */
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
	if (!c->closing && want(w, c, EPOLLIN) < 0)
		return -1;
	return replies_sent(w, c);
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
		list_move(&w->reading, c, w->now + idle_ms);
	}
}

/* Close what is past its deadline; returns the epoll_wait timeout. */
static int expire(struct worker *w)
{
	struct conn_list *ls[] = { &w->reading, &w->lingering };
	uint64_t next = UINT64_MAX;

	for (int i = 0; i < 2; i++) {
		while (ls[i]->head && ls[i]->head->deadline <= w->now)
			conn_close(ls[i]->head);
		if (ls[i]->head && ls[i]->head->deadline < next)
			next = ls[i]->head->deadline;
	}
	if (next == UINT64_MAX)
		return -1;
	return next - w->now > 60000 ? 60000 : (int)(next - w->now);
}

static void dispatch(struct worker *w, struct conn *c)
{
	int rc;

	/*
	 * EPOLLERR/EPOLLHUP arrive whatever the interest set; the recv or
	 * send below then reports the error.
	 */
	if (c->lingering)
		rc = on_linger(w, c);
	else if (c->pend)
		rc = on_writable(w, c);
	else
		rc = on_readable(w, c);
	if (rc < 0)
		conn_close(c);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[MAX_EVENTS];

	for (;;) {
		int n;

		w->now = now_ms();
		n = epoll_wait(w->ep, evs, MAX_EVENTS, expire(w));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		w->now = now_ms();
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &stop_tag)
				goto out;
			if (p == &listen_tag)
				on_accept(w);
			else
				dispatch(w, p);
		}
	}
out:
	while (w->reading.head)
		conn_close(w->reading.head);
	while (w->writing.head)
		conn_close(w->writing.head);
	while (w->lingering.head)
		conn_close(w->lingering.head);
	return NULL;
}

/* ---- set-up and shutdown -------------------------------------------- */

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-p PORT] [-t THREADS] [-i IDLE_SECONDS]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	int port = 0, nthreads = 0, idle = 10, opt, sig;
	struct worker **ws;
	sigset_t sigs;

	while ((opt = getopt(argc, argv, "p:t:i:")) != -1) {
		if (opt == 'p')
			port = number(optarg, 65535);
		else if (opt == 't')
			nthreads = number(optarg, 4096);
		else if (opt == 'i')
			idle = number(optarg, 86400);
		else
			usage(argv[0]);
	}
	if (port < 0 || nthreads < 0 || idle < 1 || optind != argc)
		usage(argv[0]);
	idle_ms = (uint64_t)idle * 1000;
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
		struct worker *w = calloc(1, sizeof(*w));

		if (!w)
			die("calloc");
		w->lfd = listener(port);
		if (!port)
			port = bound_port(w->lfd);
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		if (w->ep < 0)
			die("epoll_create1");
		w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
