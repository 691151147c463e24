/*
 * echo_load: an echo load generator built on weft itself. It opens C
 * connections to an echo server (TCP_NODELAY), and one task per connection
 * keeps k messages of S bytes in flight: it sends k, and for every full
 * echo that comes back it sends another, for d seconds. It records each
 * message's round trip (weft_now() at send against weft_now() at receipt;
 * echoes come back in order, so the i-th echo answers the i-th message)
 * in a log-linear histogram per connection, checks every echoed byte, and
 * reports
 *   RESULT weft echo <msgs/s> msgs/s conns=C inflight=k size=S
 *          p50_us=X p99_us=Y errors=E
 * (one line; -n renames the workload). Exits non-zero if a byte differed
 * or a connection failed.
 *
 *   echo_load -p PORT [-a ADDR] [-c CONNECTIONS=64] [-k IN_FLIGHT=1]
 *             [-s MSG_SIZE=64] [-d SECONDS=5] [-w WORKERS] [-n NAME]
 *
 * Reads are buffered: one recv takes whatever has arrived, every complete
 * echo in it is checked and timed, and their replacements go out in one
 * write. With k = 1 that is exactly one send and one receive per message.
 *
 * Message bytes: each connection has a pseudo-random pattern of S + 251
 * bytes, and message number i is the S bytes at offset i mod 251, so a
 * lost, repeated or reordered message shows as a mismatch.
 */
#include <errno.h>
#include <stdbool.h>

#include "bench.h"

/* ---- log-linear histogram (HdrHistogram's bucket layout) --------------
 * Values below 2^SUB_BITS ns have a bucket each; above, every power of two
 * is split into 2^SUB_BITS buckets, so a bucket is at most 1/32 of its
 * value wide (about 3% error). */
#define SUB_BITS 5
#define SUB (1u << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB)

struct hist {
	uint64_t count[NBUCKETS];
	uint64_t total;
};

static unsigned bucket_of(uint64_t v)
{
	if (v < SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - SUB_BITS;
	return ((shift + 1) << SUB_BITS) | (unsigned)((v >> shift) & (SUB - 1));
}

/* Middle of bucket b, in ns. */
static double bucket_mid(unsigned b)
{
	if (b < 2 * SUB)
		return b;
	unsigned shift = (b >> SUB_BITS) - 1;
	uint64_t lo = (uint64_t)((b & (SUB - 1)) | SUB) << shift;
	return (double)lo + (double)(UINT64_C(1) << shift) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->count[bucket_of(v)]++;
	h->total++;
}

/* The q-quantile (0..1) in ns, or 0 for an empty histogram. */
static double hist_quantile(const struct hist *h, double q)
{
	uint64_t rank = (uint64_t)(q * (double)h->total);
	uint64_t seen = 0;

	if (h->total == 0)
		return 0;
	if (rank >= h->total)
		rank = h->total - 1;
	for (unsigned b = 0; b < NBUCKETS; b++) {
		seen += h->count[b];
		if (seen > rank)
			return bucket_mid(b);
	}
	return 0;
}

/* ---- settings and per-connection state -------------------------------- */

#define PATTERN_SHIFTS 251 /* message i uses the pattern at i mod 251 */

static const char *addr = "127.0.0.1";
static uint16_t port;
static unsigned long conns = 64;
static unsigned long inflight = 1;
static size_t msg_size = 64;
static double seconds = 5;
static const char *name = "echo";

static uint64_t t_start, t_end; /* the measured window (weft_now) */

struct conn {
	unsigned id;
	int fd;
	bool failed;       /* error, early close or stall */
	bool mismatch;     /* an echoed byte differed */
	uint64_t msgs;     /* echoes received inside the window */
	unsigned char *pattern; /* msg_size + PATTERN_SHIFTS bytes */
	unsigned char *rbuf;    /* receive buffer */
	size_t rcap;
	unsigned char *sbuf;    /* inflight messages, for one write */
	uint64_t *sent_at;      /* send time of message i at i mod inflight */
	struct hist hist;
};

static const unsigned char *msg_bytes(const struct conn *c, uint64_t i)
{
	return c->pattern + i % PATTERN_SHIFTS;
}

/* Appends message i to the send buffer at *len and stamps its time. */
static void put_msg(struct conn *c, uint64_t i, size_t *len, uint64_t now)
{
	memcpy(c->sbuf + *len, msg_bytes(c, i), msg_size);
	*len += msg_size;
	c->sent_at[i % inflight] = now;
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	uint64_t next_send = 0, next_recv = 0; /* message numbers */
	size_t have = 0, slen = 0;             /* bytes in rbuf, sbuf */
	/* A server that stops answering must not hang the benchmark. */
	uint64_t saved = weft_deadline_begin(t_end + 5 * WEFT_NSEC_PER_SEC);
	uint64_t now = weft_now();

	for (unsigned long i = 0; i < inflight; i++)
		put_msg(c, next_send++, &slen, now);
	if (weft_write_all(c->fd, c->sbuf, slen, -1) < 0) {
		c->failed = true;
		goto out;
	}
	while (next_recv < next_send) {
		ssize_t n = weft_recv(c->fd, c->rbuf + have, c->rcap - have, 0);
		if (n <= 0) {
			fprintf(stderr, "echo_load: conn %u: recv: %s\n", c->id,
				n == 0 ? "closed by server"
				       : weft_strerror((int)n));
			c->failed = true;
			break;
		}
		now = weft_now();
		have += (size_t)n;

		/* Check and time every complete echo; queue replacements
		 * while the window is open. */
		size_t off = 0;
		slen = 0;
		while (have - off >= msg_size) {
			if (memcmp(c->rbuf + off, msg_bytes(c, next_recv),
				   msg_size) != 0)
				c->mismatch = true;
			if (now < t_end) {
				hist_add(&c->hist,
					 now - c->sent_at[next_recv % inflight]);
				c->msgs++;
			}
			next_recv++;
			off += msg_size;
			if (now < t_end)
				put_msg(c, next_send++, &slen, now);
		}
		memmove(c->rbuf, c->rbuf + off, have - off);
		have -= off;
		if (c->mismatch) {
			fprintf(stderr,
				"echo_load: conn %u: echo of message %llu "
				"differs\n",
				c->id, (unsigned long long)(next_recv - 1));
			break;
		}
		if (slen && weft_write_all(c->fd, c->sbuf, slen, -1) < 0) {
			c->failed = true;
			break;
		}
	}
out:
	weft_timeout_end(saved);
	weft_close(c->fd);
	return NULL;
}

/* ---- main ------------------------------------------------------------- */

static struct conn *cs;
static weft_task **tasks;

static int conn_setup(struct conn *c, unsigned id)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (id + 1);

	c->id = id;
	c->fd = -1;
	c->rcap = inflight * msg_size + 65536;
	c->pattern = malloc(msg_size + PATTERN_SHIFTS);
	c->rbuf = malloc(c->rcap);
	c->sbuf = malloc(inflight * msg_size);
	c->sent_at = calloc(inflight, sizeof *c->sent_at);
	if (!c->pattern || !c->rbuf || !c->sbuf || !c->sent_at)
		return -ENOMEM;
	for (size_t i = 0; i < msg_size + PATTERN_SHIFTS; i++) {
		x ^= x << 13; /* xorshift64 */
		x ^= x >> 7;
		x ^= x << 17;
		c->pattern[i] = (unsigned char)(x >> 32);
	}
	return 0;
}

static void *amain(void *arg)
{
	struct hist *all;
	uint64_t msgs = 0;
	unsigned long errors = 0;
	bool mismatch = false;

	(void)arg;
	/* Connect everyone first, so that the window measures echoing. */
	for (unsigned long i = 0; i < conns; i++) {
		if (conn_setup(&cs[i], (unsigned)i) < 0) {
			fprintf(stderr, "echo_load: out of memory\n");
			return (void *)1;
		}
		int fd = weft_tcp_connect(addr, port, WEFT_SO_NODELAY);
		if (fd < 0) {
			fprintf(stderr, "echo_load: connect %s:%u: %s\n", addr,
				(unsigned)port, weft_strerror(fd));
			return (void *)1;
		}
		cs[i].fd = fd;
	}
	t_start = weft_now();
	t_end = t_start + (uint64_t)(seconds * (double)WEFT_NSEC_PER_SEC);
	for (unsigned long i = 0; i < conns; i++) {
		tasks[i] = weft_spawn(conn_main, &cs[i]);
		if (!tasks[i]) {
			fprintf(stderr, "echo_load: spawn failed\n");
			return (void *)1;
		}
	}
	int err = weft_gather(tasks, conns, NULL);
	for (unsigned long i = 0; i < conns; i++)
		weft_task_release(tasks[i]);
	if (err < 0) {
		fprintf(stderr, "echo_load: gather: %s\n", weft_strerror(err));
		return (void *)1;
	}

	all = calloc(1, sizeof *all);
	if (!all)
		return (void *)1;
	for (unsigned long i = 0; i < conns; i++) {
		for (unsigned b = 0; b < NBUCKETS; b++)
			all->count[b] += cs[i].hist.count[b];
		all->total += cs[i].hist.total;
		msgs += cs[i].msgs;
		if (cs[i].failed || cs[i].mismatch)
			errors++;
		mismatch |= cs[i].mismatch;
	}
	printf("RESULT weft %s %.0f msgs/s conns=%lu inflight=%lu size=%zu "
	       "p50_us=%.1f p99_us=%.1f errors=%lu\n",
	       name, (double)msgs / ((double)(t_end - t_start) / 1e9), conns,
	       inflight, msg_size, hist_quantile(all, 0.50) / 1e3,
	       hist_quantile(all, 0.99) / 1e3, errors);
	free(all);
	return (errors || mismatch) ? (void *)1 : NULL;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s -p PORT [-a ADDR] [-c CONNECTIONS] [-k IN_FLIGHT]\n"
		"       [-s MSG_SIZE] [-d SECONDS] [-w WORKERS] [-n NAME]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { 0 };
	void *res = NULL;
	int opt, err;

	while ((opt = getopt(argc, argv, "p:a:c:k:s:d:w:n:h")) != -1) {
		switch (opt) {
		case 'p':
			port = (uint16_t)strtoul(optarg, NULL, 10);
			break;
		case 'a':
			addr = optarg;
			break;
		case 'c':
			conns = strtoul(optarg, NULL, 10);
			break;
		case 'k':
			inflight = strtoul(optarg, NULL, 10);
			break;
		case 's':
			msg_size = strtoul(optarg, NULL, 10);
			break;
		case 'd':
			seconds = strtod(optarg, NULL);
			break;
		case 'w':
			cfg.workers = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			name = optarg;
			break;
		default:
			usage(argv[0]);
		}
	}
	if (optind != argc || port == 0 || conns == 0 || inflight == 0 ||
	    msg_size == 0 || seconds <= 0)
		usage(argv[0]);

	cs = calloc(conns, sizeof *cs);
	tasks = calloc(conns, sizeof *tasks);
	if (!cs || !tasks)
		return 1;
	err = weft_run(amain, NULL, &cfg, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	for (unsigned long i = 0; i < conns; i++) {
		free(cs[i].pattern);
		free(cs[i].rbuf);
		free(cs[i].sbuf);
		free(cs[i].sent_at);
	}
	free(cs);
	free(tasks);
	return res == NULL ? 0 : 1;
}
