/*
 * epoll_http: the plain-epoll HTTP/1.1 server that the weft http benchmark
 * is compared against. It uses no weft at all. The threading is that of
 * epoll_echo.c: one thread per CPU, each with its own epoll instance and
 * its own SO_REUSEPORT listener on the same port, level-triggered, so the
 * kernel spreads connections and a connection never changes thread.
 *
 * The protocol logic is the one the weft http server implements, so that
 * the two do the same work per request:
 *  - a request's header block ends at the first "\r\n\r\n" and may be at
 *    most HDR_MAX (8 KiB) bytes, terminator included;
 *  - its first line must be METHOD SP TARGET SP "HTTP/1." DIGIT, where
 *    METHOD is one or more token characters and TARGET one or more visible
 *    characters;
 *  - the body is taken to be empty unless a Content-Length header gives
 *    its size; that many bytes are then skipped unread;
 *  - each good request gets the fixed 200 reply below; the first bad one
 *    (too long a header block, a bad first line, a bad Content-Length)
 *    gets the 400 reply, after which the connection is closed;
 *  - every reply produced from one read, so all replies to pipelined
 *    requests that arrived together, goes out in a single send.
 * Connections are always kept alive; "Connection: close", HTTP/1.0 and
 * chunked bodies are not looked at.
 *
 * Buffers: each thread owns one receive buffer and one reply buffer. A
 * connection holds memory only while it has a partial request (the
 * leftover bytes, under HDR_MAX) or unsent replies after a short send;
 * while replies are pending it waits for EPOLLOUT alone and is not read,
 * so a client that does not read cannot grow the server's memory.
 *
 * Usage: epoll_http [-p PORT] [-t THREADS]
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
#include <unistd.h>

#define HDR_MAX		(8 * 1024)
#define READ_SIZE	(64 * 1024)
#define MAX_EVENTS	256

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

struct conn {
	int fd;
	bool closing;		/* a 400 is queued: close once it is sent */
	char *in;		/* leftover partial request, or NULL */
	size_t in_len;		/* bytes in in */
	uint64_t skip;		/* body bytes still to be discarded */
	char *pend;		/* unsent replies after a short send, or NULL */
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
	char in[IN_SIZE];	/* leftover + one read, being parsed */
	char out[OUT_SIZE];	/* replies produced from that read */
};

/* Tags in epoll_data.ptr for the two fds that are not connections. */
static char listen_tag, stop_tag;

/* Written once by main on SIGINT/SIGTERM; every epoll set watches it. */
static int stop_fd = -1;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* ---- request parsing ------------------------------------------------ */

/* RFC 9110 tchar: the characters a method name may use. */
static bool is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch);
}

/* Is [p, e) exactly METHOD SP TARGET SP "HTTP/1." DIGIT? */
static bool request_line_ok(const char *p, const char *e)
{
	const char *s = p;

	while (p < e && is_tchar((unsigned char)*p))
		p++;
	if (p == s || p == e || *p++ != ' ')
		return false;
	s = p;
	while (p < e && *p > ' ' && *p < 0x7f)
		p++;
	if (p == s || p == e || *p++ != ' ')
		return false;
	return e - p == 8 && !memcmp(p, "HTTP/1.", 7) &&
	       p[7] >= '0' && p[7] <= '9';
}

/*
 * Find Content-Length among the header lines in [p, e), each ending in
 * "\r\n". Sets *len (0 when absent); returns false when a value is not a
 * plain decimal number, the one case RFC 9112 says must be rejected.
 */
static bool content_length(const char *p, const char *e, uint64_t *len)
{
	static const char name[] = "content-length:";
	const size_t nlen = sizeof(name) - 1;

	*len = 0;
	while (p < e) {
		const char *eol = memmem(p, (size_t)(e - p), "\r\n", 2);
		uint64_t v = 0;

		if (!eol)
			eol = e;
		if ((*p | 0x20) != 'c' || (size_t)(eol - p) < nlen ||
		    strncasecmp(p, name, nlen)) {
			p = eol + 2;
			continue;
		}
		p += nlen;
		while (p < eol && (*p == ' ' || *p == '\t'))
			p++;
		if (p == eol || *p < '0' || *p > '9')
			return false;
		while (p < eol && *p >= '0' && *p <= '9') {
			if (v > (UINT64_MAX - 9) / 10)
				return false;
			v = v * 10 + (uint64_t)(*p++ - '0');
		}
		while (p < eol && (*p == ' ' || *p == '\t'))
			p++;
		if (p != eol)
			return false;
		*len = v;
		return true;	/* the first one counts */
	}
	return true;
}

/*
 * Answer every complete request in buf[0, len) into w->out. Returns the
 * reply bytes written; *used says how much of buf was consumed, the rest
 * being the start of a request not yet complete. Sets c->closing on a bad
 * request, after queueing its 400.
 */
static size_t parse(struct worker *w, struct conn *c, const char *buf,
		    size_t len, size_t *used)
{
	size_t pos = 0, out = 0;

	while (pos < len) {
		const char *h = buf + pos, *end, *eol;
		size_t avail = len - pos;
		uint64_t body;

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
		end = memmem(h, avail < HDR_MAX ? avail : HDR_MAX, "\r\n\r\n", 4);
		if (!end) {
			if (avail >= HDR_MAX)
				goto bad;
			break;	/* incomplete: keep it for the next read */
		}
		eol = memmem(h, (size_t)(end + 2 - h), "\r\n", 2);
		if (!request_line_ok(h, eol) ||
		    !content_length(eol + 2, end + 2, &body))
			goto bad;
		memcpy(w->out + out, ok_reply, OK_LEN);
		out += OK_LEN;
		pos += (size_t)(end + 4 - h);
		c->skip = body;
	}
	*used = pos;
	return out;
bad:
	memcpy(w->out + out, bad_reply, BAD_LEN);
	c->closing = true;
	*used = len;
	return out + BAD_LEN;
}

/* ---- connections ---------------------------------------------------- */

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
	free(c->in);
	free(c->pend);
	free(c);
}

/*
 * Closing a socket with unread bytes in its receive queue makes the kernel
 * send RST instead of FIN, and a client that gets the RST before it reads
 * may lose the 400 we just sent. Discard what has already arrived first;
 * bytes that arrive later can still cause a reset (a lingering close, as
 * nginx does, would need a timer, which a baseline does not warrant).
 */
static void drain(struct worker *w, struct conn *c)
{
	for (int i = 0; i < 16; i++)
		if (recv(c->fd, w->in, IN_SIZE, 0) <= 0)
			break;
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
	have = c->in_len + (size_t)n;
	if (c->in) {
		memcpy(w->in, c->in, c->in_len);
		free(c->in);
		c->in = NULL;
		c->in_len = 0;
	}

	out = parse(w, c, w->in, have, &used);
	if (used < have && !c->closing) {
		c->in_len = have - used;
		c->in = malloc(c->in_len);
		if (!c->in)
			return -1;
		memcpy(c->in, w->in + used, c->in_len);
	}
	if (!out)
		return 0;

	sent = send_some(c->fd, w->out, out);
	if (sent < 0)
		return -1;
	if ((size_t)sent == out) {
		if (c->closing)
			drain(w, c);
		return c->closing ? -1 : 0;
	}

	/* Short send: keep the rest and stop reading until it is gone. */
	c->pend_len = out - (size_t)sent;
	c->pend_off = 0;
	c->pend = malloc(c->pend_len);
	if (!c->pend)
		return -1;
	memcpy(c->pend, w->out + sent, c->pend_len);
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
	if (c->closing) {
		drain(w, c);
		return -1;
	}
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

/* ---- set-up and shutdown -------------------------------------------- */

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
			port = atoi(optarg);
		else if (opt == 't')
			nthreads = atoi(optarg);
		else
			usage(argv[0]);
	}
	if (port < 0 || port > 65535 || nthreads < 0 || optind != argc)
		usage(argv[0]);
	if (!nthreads)
		nthreads = default_threads();
	if (nthreads < 1)
		nthreads = 1;

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
