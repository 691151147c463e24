/*
 * send_zc: what weft's weft_send() would gain from zero-copy sends
 * (IORING_OP_SEND_ZC, Linux 6.0) or send bundles (IORING_RECVSEND_BUNDLE,
 * 6.10), measured on liburing directly, over a loopback TCP connection.
 *
 *   send_zc [--size BYTES] [--mib MIB] [--qd N] [--reps N]
 *
 * Each mode sends --mib MiB (default 256) in messages of --size bytes
 * (default: 64, 4096 and 65536 in turn) from one ring; a thread of its own
 * drains the other end with recv(2) into a 1 MiB buffer. Modes:
 *   send     IORING_OP_SEND, one message per request: what weft_send()
 *            does today;
 *   zc       IORING_OP_SEND_ZC: a request's buffer may be reused only once
 *            its notification (IORING_CQE_F_NOTIF) has come, so a request
 *            counts as done when both its result and its notification are
 *            in, as a weft_send() built on it would have to wait for;
 *   sendmsg  IORING_OP_SENDMSG with 8 messages in one iovec array;
 *   bundle   IORING_OP_SEND with IORING_RECVSEND_BUNDLE: 8 messages from a
 *            provided-buffer ring in one request (not in liburing 2.3's
 *            headers: set in the raw SQE fields; skipped where the kernel
 *            lacks IORING_FEAT_RECVSEND_BUNDLE).
 * --qd N keeps N requests in flight (default 1, as one task's weft_send()
 * does; each request its own buffer; bundles at 1 only, since a bundle
 * takes every buffer the ring holds). Every mode runs once to warm up,
 * then --reps times (default 5); the median is reported as
 *   RESULT liburing send_<mode>_<size> <MiB/s> MiB/s ns_per_msg=...
 *
 * On loopback the kernel copies zero-copy data anyway when it reaches the
 * receiving socket (the notification then says "copied"), so this measures
 * the cost of the zero-copy machinery (page pinning, the notification)
 * against a copy that happens regardless: an upper bound on what ZC could
 * bring on loopback, not a measure of a NIC's path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif

#define BATCH 8 /* messages per sendmsg or bundle request */
#define MAX_QD 64
#define BGID 7

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "send_zc: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* A connected loopback TCP pair: *tx sends, *rx receives. */
static void tcp_pair(int *tx, int *rx)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&a, &len) < 0)
		die("listen", errno);
	*tx = socket(AF_INET, SOCK_STREAM, 0);
	if (*tx < 0 || connect(*tx, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect", errno);
	*rx = accept(l, NULL, NULL);
	if (*rx < 0)
		die("accept", errno);
	close(l);
	setsockopt(*tx, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void *drain(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *buf = malloc(1 << 20);

	while (buf && recv(fd, buf, 1 << 20, 0) > 0)
		;
	free(buf);
	return NULL;
}

enum mode { M_SEND, M_ZC, M_SENDMSG, M_BUNDLE };
static const char *const mode_name[] = { "send", "zc", "sendmsg", "bundle" };

struct slot {
	bool busy;
	bool result; /* the result CQE is in */
	bool notif;  /* the notification is in (zc), or none is due */
	struct iovec iov[BATCH];
	struct msghdr msg;
};

struct bench {
	struct io_uring ring;
	int fd;
	size_t size;
	unsigned qd;
	char *bufs; /* qd * BATCH buffers of size bytes */
	struct slot slot[MAX_QD];
	struct io_uring_buf_ring *br;
	unsigned br_entries;
	bool bundles;
};

/* Makes BATCH buffers of slot i available in the buffer ring. */
static void br_fill(struct bench *b, unsigned i)
{
	for (unsigned k = 0; k < BATCH; k++)
		io_uring_buf_ring_add(b->br,
				      b->bufs + ((size_t)i * BATCH + k) * b->size,
				      (unsigned)b->size,
				      (unsigned short)(i * BATCH + k),
				      io_uring_buf_ring_mask(b->br_entries), (int)k);
	io_uring_buf_ring_advance(b->br, BATCH);
}

static void issue(struct bench *b, enum mode m, unsigned i)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	struct slot *s = &b->slot[i];
	char *buf = b->bufs + (size_t)i * BATCH * b->size;

	if (!sqe)
		die("sqe", EBUSY);
	s->busy = true;
	s->result = false;
	s->notif = m != M_ZC;
	switch (m) {
	case M_SEND:
		io_uring_prep_send(sqe, b->fd, buf, b->size, MSG_WAITALL);
		break;
	case M_ZC:
		io_uring_prep_send_zc(sqe, b->fd, buf, b->size, MSG_WAITALL, 0);
		break;
	case M_SENDMSG:
		for (unsigned k = 0; k < BATCH; k++) {
			s->iov[k].iov_base = buf + k * b->size;
			s->iov[k].iov_len = b->size;
		}
		memset(&s->msg, 0, sizeof(s->msg));
		s->msg.msg_iov = s->iov;
		s->msg.msg_iovlen = BATCH;
		io_uring_prep_sendmsg(sqe, b->fd, &s->msg, MSG_WAITALL);
		break;
	case M_BUNDLE:
		br_fill(b, i);
		/* len 0: as many buffers as the ring holds, which is
		 * BATCH (one request in flight: qd 1 only; a length here
		 * makes this kernel fail the request with -ENOBUFS). */
		io_uring_prep_send(sqe, b->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BGID;
		sqe->ioprio |= IORING_RECVSEND_BUNDLE;
		break;
	}
	io_uring_sqe_set_data64(sqe, i);
}

/* Bytes a request of mode m carries. */
static size_t per_req(const struct bench *b, enum mode m)
{
	return m == M_SENDMSG || m == M_BUNDLE ? BATCH * b->size : b->size;
}

/* Sends total bytes in mode m; returns the time taken. */
static uint64_t run(struct bench *b, enum mode m, size_t total)
{
	size_t reqs = total / per_req(b, m), issued = 0, done = 0;
	uint64_t t0 = now_ns();

	while (done < reqs) {
		struct io_uring_cqe *cqe;
		int r;

		for (unsigned i = 0; i < b->qd && issued < reqs; i++)
			if (!b->slot[i].busy) {
				issue(b, m, i);
				issued++;
			}
		r = io_uring_submit_and_wait(&b->ring, 1);
		if (r < 0 && r != -EINTR)
			die("submit", r);
		while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
			struct slot *s = &b->slot[cqe->user_data];

			if (cqe->flags & IORING_CQE_F_NOTIF) {
				s->notif = true;
			} else {
				if (cqe->res < 0)
					die(mode_name[m], cqe->res);
				/* A short bundle or sendmsg would leave bytes
				 * unsent: the comparison would be unfair. */
				if ((size_t)cqe->res != per_req(b, m)) {
					fprintf(stderr,
						"send_zc: %s sent %d of %zu\n",
						mode_name[m], cqe->res,
						per_req(b, m));
					exit(1);
				}
				s->result = true;
				/* SEND_ZC: F_MORE says a notification follows. */
				if (m == M_ZC && !(cqe->flags & IORING_CQE_F_MORE))
					s->notif = true;
			}
			io_uring_cqe_seen(&b->ring, cqe);
			if (s->busy && s->result && s->notif) {
				s->busy = false;
				done++;
			}
		}
	}
	return now_ns() - t0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void measure(size_t size, size_t total, unsigned qd, unsigned reps)
{
	struct bench b;
	int rx;
	pthread_t th;

	memset(&b, 0, sizeof(b));
	b.size = size;
	b.qd = qd;
	tcp_pair(&b.fd, &rx);
	if (pthread_create(&th, NULL, drain, (void *)(intptr_t)rx))
		die("thread", errno);
	if (io_uring_queue_init(256, &b.ring, 0) < 0)
		die("ring", errno);
	b.bufs = aligned_alloc(4096, ((qd * BATCH * size + 4095) / 4096) * 4096);
	if (!b.bufs)
		die("buffers", ENOMEM);
	memset(b.bufs, 'x', qd * BATCH * size);
	b.bundles = b.ring.features & IORING_FEAT_RECVSEND_BUNDLE;
	if (b.bundles) {
		struct io_uring_buf_reg reg;
		int r;

		b.br_entries = 1;
		while (b.br_entries < qd * BATCH)
			b.br_entries <<= 1;
		b.br = mmap(NULL, b.br_entries * sizeof(struct io_uring_buf),
			    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
		if (b.br == MAP_FAILED)
			die("buffer ring", errno);
		memset(&reg, 0, sizeof(reg));
		reg.ring_addr = (uint64_t)(uintptr_t)b.br;
		reg.ring_entries = b.br_entries;
		reg.bgid = BGID;
		r = io_uring_register_buf_ring(&b.ring, &reg, 0);
		if (r < 0) {
			fprintf(stderr, "send_zc: no buffer ring (%s): no bundles\n",
				strerror(-r));
			b.bundles = false;
		} else {
			io_uring_buf_ring_init(b.br);
		}
	}
	for (enum mode m = M_SEND; m <= M_BUNDLE; m++) {
		uint64_t t[64];
		double mibs, ns_msg;

		if (m == M_BUNDLE && (!b.bundles || qd != 1)) {
			printf("SKIP liburing send_%s_%zu: %s\n", mode_name[m],
			       size,
			       qd != 1 ? "bundles at qd 1 only"
				       : "the kernel has no "
					 "IORING_FEAT_RECVSEND_BUNDLE");
			continue;
		}
		run(&b, m, total / 4); /* warm-up */
		for (unsigned r = 0; r < reps; r++)
			t[r] = run(&b, m, total);
		qsort(t, reps, sizeof(t[0]), cmp_u64);
		mibs = (double)total / (1 << 20) / ((double)t[reps / 2] / 1e9);
		ns_msg = (double)t[reps / 2] / (double)(total / size);
		printf("RESULT liburing send_%s_%zu %.1f MiB/s ns_per_msg=%.1f "
		       "qd=%u best=%.1f worst=%.1f\n",
		       mode_name[m], size, mibs, ns_msg, qd,
		       (double)total / (1 << 20) / ((double)t[0] / 1e9),
		       (double)total / (1 << 20) / ((double)t[reps - 1] / 1e9));
		fflush(stdout);
	}
	shutdown(b.fd, SHUT_WR);
	pthread_join(th, NULL);
	io_uring_queue_exit(&b.ring);
	close(b.fd);
	close(rx);
	free(b.bufs);
}

int main(int argc, char **argv)
{
	size_t sizes[] = { 64, 4096, 65536 }, size = 0, mib = 256;
	unsigned qd = 1, reps = 5;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--size"))
			size = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--mib"))
			mib = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--qd"))
			qd = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--reps"))
			reps = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--size BYTES] [--mib MIB] "
				"[--qd N] [--reps N]\n", argv[0]);
			return 2;
		}
	}
	if (qd < 1 || qd > MAX_QD || reps < 1 || reps > 64 || mib < 1) {
		fprintf(stderr, "send_zc: qd 1..%d, reps 1..64\n", MAX_QD);
		return 2;
	}
	for (unsigned i = 0; i < 3; i++) {
		size_t s = size ? size : sizes[i];
		/* Small messages: fewer bytes, or a run takes minutes. */
		size_t total = s < 4096 ? (mib << 20) / 64 : mib << 20;

		total -= total % (BATCH * s);
		measure(s, total, qd, reps);
		if (size)
			break;
	}
	return 0;
}
