/*
 * conn_load: the client side of scale::ten_thousand_connections_* in
 * test_scale.c, run as a process of its own so that its descriptors do not
 * count against the server's RLIMIT_NOFILE. Plain C on epoll, without
 * weft: the client shares no code with the server under test.
 *
 *   conn_load PORT CONNS ROUNDS SIZE SECONDS [RESET_EVERY]
 *
 * 1. Opens CONNS TCP connections to 127.0.0.1:PORT, at most WINDOW of
 *    them connecting at a time, and keeps every one open.
 * 2. ROUNDS times: writes SIZE bytes on every connection (on all of them
 *    before it reads any, so that the server's receives meet a burst of
 *    CONNS messages at once), then reads every echo back and checks it.
 *    With RESET_EVERY k, every k-th connection (0, k, 2k, ...) is reset
 *    in the last round instead: its message is written, and the
 *    connection closed at once with SO_LINGER 0 (a reset, no end of
 *    stream), its echo not waited for: the server then has its bytes in
 *    flight, in buffers or half sent when the reset comes.
 * 3. Shuts down the sending side of every other connection and waits for
 *    the server's end of stream on each (no byte more), then closes them.
 *
 * Prints one line, "conns=C connected=N rounds=R echoed=B reset=Z bad=K
 * ms=T",
 * and exits 0 when every connection was opened and every byte came back
 * right and in order; 1 when a connection failed or a byte differed; 2
 * when SECONDS passed first (a lost message shows as this).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 256 /* connections in their handshake at one time */

enum { CONNECTING, OPEN, DRAINING, DONE, FAILED };

struct conn {
	int fd;
	int state;
	int watched; /* in the epoll set */
	unsigned wpos, rpos; /* bytes written, read back this round */
};

static struct conn *conns;
static int epfd, nconns, rounds, reset_every, resets;
static unsigned size;
static long long echoed, bad;

/* The byte at offset off of connection id's stream: differs between
 * connections and between rounds, so a message delivered to the wrong
 * connection, lost, repeated or reordered shows. */
static uint8_t pat(int id, uint64_t off)
{
	uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15u + off;

	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9u;
	return (uint8_t)(x >> 56);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(int id, const char *what, int err)
{
	if (bad++ < 10)
		fprintf(stderr, "conn_load: connection %d: %s%s%s\n", id,
			what, err ? ": " : "", err ? strerror(err) : "");
	if (conns[id].fd >= 0)
		close(conns[id].fd);
	conns[id].fd = -1;
	conns[id].state = FAILED;
}

/* Waits for events on the connection from now on. */
static int watch(int id, unsigned events)
{
	struct epoll_event ev = { .events = events, .data.u32 = (unsigned)id };
	int op = conns[id].watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

	if (epoll_ctl(epfd, op, conns[id].fd, &ev) == 0) {
		conns[id].watched = 1;
		return 0;
	}
	fail(id, "epoll_ctl", errno);
	return -1;
}

/* Out of the set until its next phase: not even a hang-up wakes us. */
static void quiet(int id)
{
	if (epoll_ctl(epfd, EPOLL_CTL_DEL, conns[id].fd, NULL) == 0)
		conns[id].watched = 0;
	else
		fail(id, "epoll_ctl", errno);
}

static int start_connect(int id, const struct sockaddr_in *sa)
{
	int one = 1, fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	conns[id].fd = fd;
	if (fd < 0) {
		fail(id, "socket", errno);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 &&
	    errno != EINPROGRESS) {
		fail(id, "connect", errno);
		return -1;
	}
	conns[id].state = CONNECTING;
	return watch(id, EPOLLOUT);
}

/* Moves up to a buffer's worth of this round's message at *pos: writes it
 * from the pattern (out), or reads the echo and checks it against the
 * pattern. 1: some moved; 0: nothing to move now; -1: the connection
 * failed (and is closed). */
static int move(int id, int round, unsigned *pos, int out)
{
	uint64_t at = (uint64_t)round * size + *pos;
	unsigned n = size - *pos;
	uint8_t buf[4096];
	ssize_t r;

	if (n > sizeof(buf))
		n = sizeof(buf);
	if (out)
		for (unsigned i = 0; i < n; i++)
			buf[i] = pat(id, at + i);
	r = out ? write(conns[id].fd, buf, n) : read(conns[id].fd, buf, n);
	if (r < 0 && errno == EAGAIN)
		return 0;
	if (r <= 0) {
		fail(id, out ? "write" : r ? "read" : "end of stream before "
						      "the echo",
		     r < 0 ? errno : 0);
		return -1;
	}
	for (ssize_t i = 0; !out && i < r; i++)
		if (buf[i] != pat(id, at + (uint64_t)i)) {
			fail(id, "echoed byte differs", 0);
			return -1;
		}
	if (!out)
		echoed += r;
	*pos += (unsigned)r;
	return 1;
}

/* Closes the connection with a reset (SO_LINGER 0): the server gets no
 * end of stream, and loses what it had not sent yet. */
static void reset(int id)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (setsockopt(conns[id].fd, SOL_SOCKET, SO_LINGER, &lg,
		       sizeof(lg)) < 0) {
		fail(id, "SO_LINGER", errno);
		return;
	}
	close(conns[id].fd);
	conns[id].fd = -1;
	conns[id].state = DONE;
	resets++;
}

/* Writes what is left of this round's message. */
static void push(int id, int round)
{
	struct conn *c = &conns[id];

	while (c->wpos < size && move(id, round, &c->wpos, 1) > 0)
		;
	if (c->state != FAILED)
		watch(id, EPOLLIN | (c->wpos < size ? EPOLLOUT : 0));
}

/* Reads and checks the echo; true once the round's SIZE bytes are in. */
static int pull(int id, int round)
{
	struct conn *c = &conns[id];

	while (c->rpos < size && move(id, round, &c->rpos, 0) > 0)
		;
	return c->state != FAILED && c->rpos == size;
}

/* Waits for events until `left` connections are through the phase, or
 * the deadline. */
static int run_phase(int phase, int round, int left, long long deadline,
		     const struct sockaddr_in *sa, int *next)
{
	struct epoll_event evs[256];
	int connecting = 0;

	if (phase == CONNECTING)
		left = nconns;
	while (left > 0) {
		while (phase == CONNECTING && *next < nconns &&
		       connecting < WINDOW) {
			if (start_connect((*next)++, sa) == 0)
				connecting++;
			else
				left--;
		}
		int n = epoll_wait(epfd, evs, 256, 200);

		if (n < 0 && errno != EINTR) {
			perror("conn_load: epoll_wait");
			exit(1);
		}
		if (now_ms() > deadline)
			return -1;
		for (int i = 0; i < n; i++) {
			int id = (int)evs[i].data.u32, err = 0;
			socklen_t len = sizeof(err);
			struct conn *c = &conns[id];
			char x;

			if (c->state != phase)
				continue;
			if (phase == CONNECTING) {
				connecting--;
				left--;
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err,
					   &len);
				if (err) {
					fail(id, "connect", err);
					continue;
				}
				c->state = OPEN;
				quiet(id);
			} else if (phase == OPEN) {
				if (evs[i].events & EPOLLOUT)
					push(id, round);
				if (c->state != FAILED && c->rpos < size &&
				    pull(id, round)) {
					left--;
					quiet(id);
				} else if (c->state == FAILED) {
					left--;
				}
			} else {
				ssize_t r = read(c->fd, &x, 1);

				if (r < 0 && errno == EAGAIN)
					continue;
				left--;
				if (r != 0) {
					fail(id, r < 0 ? "read at the end"
						       : "a byte after the "
							 "echoes",
					     r < 0 ? errno : 0);
					continue;
				}
				close(c->fd);
				c->fd = -1;
				c->state = DONE;
			}
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	long long t0 = now_ms(), deadline;
	int connected = 0, next = 0, rc;
	struct rlimit rl;

	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: conn_load PORT CONNS ROUNDS SIZE "
				"SECONDS [RESET_EVERY]\n");
		return 1;
	}
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	nconns = atoi(argv[2]);
	rounds = atoi(argv[3]);
	size = (unsigned)atoi(argv[4]);
	deadline = t0 + atoll(argv[5]) * 1000;
	reset_every = argc == 7 ? atoi(argv[6]) : 0;
	if (nconns <= 0 || rounds <= 0 || size == 0) {
		fprintf(stderr, "conn_load: bad arguments\n");
		return 1;
	}
	/* Room for every connection: up to the hard limit. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	conns = calloc((size_t)nconns, sizeof(*conns));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!conns || epfd < 0) {
		perror("conn_load");
		return 1;
	}
	for (int i = 0; i < nconns; i++)
		conns[i].fd = -1;
	rc = run_phase(CONNECTING, 0, 0, deadline, &sa, &next);
	for (int i = 0; i < nconns; i++)
		connected += conns[i].state == OPEN;
	for (int r = 0; rc == 0 && r < rounds && !bad; r++) {
		int left = 0;

		for (int i = 0; i < nconns; i++) {
			if (conns[i].state != OPEN)
				continue;
			conns[i].wpos = conns[i].rpos = 0;
			push(i, r);
			if (conns[i].state == OPEN && reset_every > 0 &&
			    r == rounds - 1 && i % reset_every == 0)
				reset(i);
			left += conns[i].state == OPEN;
		}
		rc = run_phase(OPEN, r, left, deadline, &sa, &next);
	}
	if (rc == 0 && !bad) {
		int left = 0;

		for (int i = 0; i < nconns; i++) {
			if (conns[i].state != OPEN)
				continue;
			if (shutdown(conns[i].fd, SHUT_WR) < 0) {
				fail(i, "shutdown", errno);
				continue;
			}
			conns[i].state = DRAINING;
			if (watch(i, EPOLLIN) == 0)
				left++;
		}
		rc = run_phase(DRAINING, 0, left, deadline, &sa, &next);
	}
	printf("conns=%d connected=%d rounds=%d echoed=%lld reset=%d "
	       "bad=%lld ms=%lld\n", nconns, connected, rounds, echoed, resets,
	       bad, now_ms() - t0);
	fflush(stdout);
	if (rc < 0) {
		fprintf(stderr, "conn_load: past the deadline of %s s\n",
			argv[5]);
		return 2;
	}
	return bad || connected != nconns ? 1 : 0;
}
