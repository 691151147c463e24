/*
 * I/O requests of tasks: each call prepares one SQE on the ring of the
 * worker it runs on, parks the task, and returns the completion's result.
 *
 * Where a request lives
 *   The ring is SINGLE_ISSUER: only its worker may submit to it, and (with
 *   DEFER_TASKRUN) only its worker sees completions. So while a request is
 *   in flight its task is pinned to that worker (flags |= WEFT__T_PINNED,
 *   home = the worker): every wake-up, the completion's, a cancellation's or
 *   a deadline's, brings it back there, where it can submit the
 *   IORING_OP_ASYNC_CANCEL that a cancellation needs. When the call returns
 *   the task's own pinning is put back and it may be stolen again. The
 *   flags are written by the task before its wait prepares the park and read
 *   by a waker after its CAS on task->park, which the acq_rel exchange
 *   orders (wait.h).
 *
 * The request's record (struct weft__op) is on the task's stack. reap()
 * (runtime/ring.c) runs on the same worker; it stores the result, then `done`
 * (release), then wakes the task, reading op->task before the store. The
 * task leaves only after seeing `done` (acquire), so the record outlives
 * the kernel's use of it, and a cancelled call returns only once the
 * kernel has given the buffer back (the request's own CQE has come).
 *
 * Submission is batched: requests are queued in the SQ and handed to the
 * kernel when the worker runs out of tasks, every WEFT__INJECT_INTERVAL
 * picks, or when it parks (worker.c, idle.c).
 *
 * Metrics: each public call is a *_unmetered() body wrapped in a function
 * that counts it by kind and its latency (runtime/metrics.h), the same on
 * either reactor; calls made of other calls count those.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/openat2.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ops.h"
#include "../runtime/base.h"
#include "../runtime/epoll.h"
#include "../runtime/metrics.h"
#include "../runtime/pbuf.h"
#include "../runtime/stream.h"
#include "../runtime/ring.h"
#include "../runtime/runtime.h"
#include "../runtime/task.h"
#include "../runtime/wait.h"
#include "../runtime/worker.h"

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define WEFT__DEFINED(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#else
#define WEFT__DEFINED(p, n) ((void)(p), (void)(n))
#endif

/*
 * Memcheck does not see the kernel write into a buffer through the ring,
 * so every byte a program received was "uninitialised" under valgrind
 * (issue 13). What a call returned is marked defined: the bytes counted
 * by its result, an address and its length, a statx. Outside valgrind a
 * client request is a few instructions that do nothing.
 */
static ssize_t filled(const void *buf, ssize_t n)
{
	if (n > 0)
		WEFT__DEFINED(buf, (size_t)n);
	return n;
}

static ssize_t filled_iov(const struct iovec *iov, size_t cnt, ssize_t n)
{
	size_t left = n > 0 ? (size_t)n : 0;

	for (size_t i = 0; i < cnt && left; i++) {
		size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;

		WEFT__DEFINED(iov[i].iov_base, k);
		left -= k;
	}
	return n;
}

struct io {
	struct weft__worker *w;
	struct weft__tcb *self;
	struct weft__op op;
	int err;
	bool nocancel; /* weft_close(): runs to completion regardless */
};

/* Whether a call of the calling thread may start: 0, or -EPERM (not in a
 * task), -ECANCELED, -ETIMEDOUT (unless nocancel). Both reactors. */
static int call_check(struct weft__worker *w, bool nocancel)
{
	struct weft__tcb *self;

	if (!w || !w->current)
		return -EPERM;
	self = w->current;
	if (nocancel)
		return 0;
	if (weft__task_cancel_pending(self))
		return -ECANCELED;
	if (self->deadline != WEFT_NEVER && self->deadline <= weft_now())
		return -ETIMEDOUT;
	return 0;
}

/*
 * Starts a request: an SQE to fill, or NULL with io->err set when the call
 * must not start (not in a task, cancelled, deadline passed).
 */
static struct io_uring_sqe *io_begin(struct io *io)
{
	struct weft__worker *w = weft__worker_self();
	struct io_uring_sqe *sqe;

	io->err = call_check(w, io->nocancel);
	if (io->err)
		return NULL;
	io->w = w;
	io->self = w->current;
	sqe = weft__ring_sqe(w);
	if (!sqe) /* the ring failed for good; the runtime is stopping */
		io->err = atomic_load_explicit(&w->rt->fatal,
					       memory_order_relaxed);
	return sqe;
}

/*
 * The caller's result for a completion. A request cancelled by us (why:
 * the reason, 0 if no cancellation was sent) ends with -ECANCELED if the
 * kernel took it back before it ran, or, if it was running on an io-wq
 * thread (an open blocked on a FIFO, a read the kernel could not poll),
 * with whatever the interrupted system call gave: -EINTR, or one of the
 * kernel's internal restart codes, which must never reach a caller
 * (issue 15: a weft_open under a deadline returned -512). All of them are
 * the cancellation's reason. Without a cancellation a restart code is
 * still an interruption: -EINTR.
 */
#define WEFT__ERESTARTSYS 512
#define WEFT__ERESTARTNOINTR 513
#define WEFT__ERESTARTNOHAND 514
#define WEFT__ERESTART_RESTARTBLOCK 516

static int io_result(int res, int why)
{
	bool restart = res == -WEFT__ERESTARTSYS ||
		       res == -WEFT__ERESTARTNOINTR ||
		       res == -WEFT__ERESTARTNOHAND ||
		       res == -WEFT__ERESTART_RESTARTBLOCK;

	if (why && (res == -ECANCELED || res == -EINTR || restart))
		return why;
	return restart ? -EINTR : res;
}

struct io_waiting {
	struct weft__wait wt;
	struct io *io;
	int why; /* what made the task cancel the request; 0: nothing */
};

/* Acquire: pairs with the completion's release of done (ring.c). */
static bool io_ready(struct weft__wait *wt)
{
	struct io *io = ((struct io_waiting *)wt)->io;

	if (atomic_load_explicit(&io->op.done, memory_order_acquire))
		return true;
	/* Not done: still pinned, so back on the issuing worker. */
	weft__assert(wt->w == io->w);
	return false;
}

/* Cancelled or timed out: the request is asked to stop, and the wait
 * goes on for its own completion (the kernel may still use the buffer
 * until then). */
static bool io_give_up(struct weft__wait *wt, int why)
{
	struct io_waiting *u = (struct io_waiting *)wt;

	u->why = why;
	weft__ring_op_cancel(u->io->w, &u->io->op);
	return false;
}

/* Waits for the request prepared in sqe; returns its result. */
static int io_wait(struct io *io, struct io_uring_sqe *sqe)
{
	struct weft__tcb *self = io->self;
	struct weft__worker *w = io->w;
	unsigned flags = weft__task_flags(self);
	struct io_waiting u; /* field by field: see runtime/wq.c's park() */

	/* The registry's words for it (debug.h), read before the sqe is
	 * handed on. */
	int64_t what = (int64_t)((uint64_t)sqe->opcode << 32 |
				 (uint32_t)sqe->fd);

	weft__ring_op_start(w, &io->op, self, flags, sqe);
	weft__ring_op_pin(w, self, flags);
	u.io = io;
	u.why = 0;
	weft__wait_init(&u.wt, w, io->nocancel ? WEFT_NEVER : self->deadline);
	weft__wait_for(&u.wt, WEFT__W_IO, NULL, what);
	u.wt.nocancel = io->nocancel;
	weft__wait(&u.wt, io_ready, io_give_up);
	atomic_store_explicit(&self->flags, flags, memory_order_relaxed);
	return io_result(io->op.res, u.why);
}

/*
 * The length to put in an SQE. Its field is 32 bits wide, and a result must
 * fit the CQE's int: a size_t of 4 GiB or more would be cut (1 << 32 to 0,
 * a false end of stream on a recv; issue 9). Cap it as read(2) does at
 * MAX_RW_COUNT (INT_MAX rounded down to a page): the call returns a short
 * count, which every caller of these calls must handle anyway.
 */
#define WEFT__IO_MAX 0x7ffff000u

static unsigned sqe_len(size_t len)
{
	return len > WEFT__IO_MAX ? WEFT__IO_MAX : (unsigned)len;
}

/* The common shape of a call: prepare, or return why not; then wait. */
#define IO_CALL(prep)                                                   \
	do {                                                            \
		struct io io_ = { .nocancel = false };                  \
		struct io_uring_sqe *sqe_ = io_begin(&io_);             \
		if (!sqe_)                                              \
			return io_.err;                                 \
		prep;                                                   \
		return io_wait(&io_, sqe_);                             \
	} while (0)

/* The body of each public call: its *_unmetered() form, counted by kind
 * with its latency (see "Metrics" above). */
#define METERED(kind, type, call)                                       \
	do {                                                            \
		uint64_t t0_ = weft__metrics_io_begin(kind);            \
		type r_ = (call);                                       \
		weft__metrics_io_end(kind, t0_);                        \
		return r_;                                              \
	} while (0)

/* ---- the epoll reactor's calls -------------------------------------------
 * On a runtime that runs the epoll reactor (runtime/epoll.c) each call is
 * done here instead: the non-blocking form of the system call first
 * (MSG_DONTWAIT, RWF_NOWAIT, a non-blocking listener), and on -EAGAIN a
 * wait for the descriptor's readiness (weft__epoll_wait_fd()), then the
 * call again. A cancellation or deadline ends the wait: a read or accept
 * then tries once more without waiting and returns what had arrived, if
 * anything (ep_last_try()); otherwise the call returns -ECANCELED or
 * -ETIMEDOUT having consumed nothing, or (a send that went out in part
 * before) what it reports. What has no readiness
 * (regular files, directories, opens, stats, syncs) runs on the blocking
 * pool, as weft_run_blocking() calls do. errno is read right after each
 * system call, before the task can switch.
 */

/* ep_loop(fd, events, nowait, len, expr): expr (a system call, -1 and
 * errno on failure) until it succeeds or fails with anything but -EAGAIN
 * or -EINTR, waiting for `events` on fd between tries; nowait: -EAGAIN is
 * the answer (the caller passed MSG_DONTWAIT). len: 0, or for a read of up
 * to len bytes, which then waits first when the worker guesses there is
 * nothing to read (weft__epoll_dry()) and records how much it got.
 * Returns from the caller. */
#define ep_loop(fd, events, nowait, len, expr)                           \
	do {                                                             \
		WEFT__KEEP_ERRNO;                                        \
		bool last_ = false;                                      \
		int e_ = call_check(weft__worker_self(), false);          \
		if (e_)                                                  \
			return e_;                                       \
		if ((len) && !(nowait) && weft__epoll_dry(fd)) {         \
			e_ = weft__epoll_wait_fd((fd), (events));        \
			if (e_ < 0 && !ep_last_try((events), e_))        \
				return e_;                               \
			last_ = e_ < 0;                                  \
		}                                                        \
		for (;;) {                                               \
			ssize_t r_ = (expr);                             \
			if (r_ >= 0) {                                   \
				if (len)                                 \
					weft__epoll_got((fd), (size_t)r_, \
							(len));          \
				return r_;                               \
			}                                                \
			r_ = -errno;                                     \
			if (r_ == -EINTR)                                \
				continue;                                \
			if (last_)                                       \
				return e_;                               \
			if (r_ != -EAGAIN || (nowait))                   \
				return r_;                               \
			e_ = weft__epoll_wait_fd((fd), (events));        \
			if (e_ < 0 && !ep_last_try((events), e_))        \
				return e_;                               \
			last_ = e_ < 0;                                  \
		}                                                        \
	} while (0)

/* A read or accept whose wait a cancellation or deadline ended tries its
 * call once more, without waiting: what arrived before the cancellation
 * reached the wait is returned, and the cancellation stays pending for the
 * next suspension point, as on io_uring, where a request that completed
 * first returns its result (weft.h, I/O cancellation). Nothing is read
 * that was not there already. Writes do not: a send started after its
 * cancellation would be new work. */
static inline bool ep_last_try(unsigned events, int err)
{
	return (events & EPOLLIN) && (err == -ECANCELED || err == -ETIMEDOUT);
}

#define ep_call(fd, events, nowait, expr) \
	ep_loop(fd, events, nowait, (size_t)0, expr)
#define ep_call_in(fd, len, nowait, expr) \
	ep_loop(fd, EP_IN, nowait, (size_t)(len), expr)

#define EP_IN (EPOLLIN | EPOLLRDHUP)
#define EP_OUT EPOLLOUT

/* A call run on the blocking pool: the system call, and its result (or
 * -errno) read on the pool thread. */
enum blk_kind { BLK_READ, BLK_WRITE, BLK_OPENAT, BLK_STATX, BLK_FSYNC,
		BLK_FDATASYNC };

struct blk {
	enum blk_kind kind;
	int fd, flags;
	const char *path;
	mode_t mode;
	const struct iovec *iov;
	int cnt;
	off_t off;
	struct statx *stx;
	ssize_t res;
};

static void *blk_run(void *arg)
{
	struct blk *b = arg;
	ssize_t r = -1;

	switch (b->kind) {
	case BLK_READ:
		r = preadv2(b->fd, b->iov, b->cnt, b->off, 0);
		break;
	case BLK_WRITE:
		r = pwritev2(b->fd, b->iov, b->cnt, b->off, 0);
		break;
	case BLK_OPENAT:
		r = openat(b->fd, b->path, b->flags, b->mode);
		break;
	case BLK_STATX:
		r = statx(b->fd, b->path, b->flags, STATX_BASIC_STATS, b->stx);
		break;
	case BLK_FSYNC:
		r = fsync(b->fd);
		break;
	case BLK_FDATASYNC:
		r = fdatasync(b->fd);
		break;
	}
	b->res = r < 0 ? -errno : r;
	return NULL;
}

/* -ECANCELED, -ETIMEDOUT if the call never started (the pool's rule:
 * once a thread took it, it runs to its end). */
static ssize_t blk_call(struct blk *b)
{
	WEFT__KEEP_ERRNO;
	int err = call_check(weft__worker_self(), false);

	if (err)
		return err;
	err = weft_run_blocking(blk_run, b, NULL);
	return err < 0 ? err : b->res;
}

/*
 * read and write, any descriptor: RWF_NOWAIT first (a pipe or socket with
 * nothing to give says -EAGAIN; a file whose pages are cached is read
 * here at once). -EAGAIN on a pollable descriptor waits for readiness;
 * a descriptor epoll refuses (a regular file: its data is on the disk)
 * goes to the pool. -EOPNOTSUPP (no RWF_NOWAIT for it: a tty, a timerfd,
 * some file systems) waits for readiness if it has any, then goes to the
 * pool, so that a worker never blocks. An offset on a descriptor that has
 * none (a pipe, -ESPIPE) is ignored, as io_uring ignores it.
 */
static ssize_t ep_rw(bool wr, int fd, const struct iovec *iov, int cnt,
		     int64_t offset)
{
	struct blk b = { .kind = wr ? BLK_WRITE : BLK_READ, .fd = fd,
			 .iov = iov, .cnt = cnt };
	off_t off = offset < 0 ? -1 : (off_t)offset;
	WEFT__KEEP_ERRNO;
	int err = call_check(weft__worker_self(), false);

	if (err)
		return err;
	for (;;) {
		ssize_t r = wr ? pwritev2(fd, iov, cnt, off, RWF_NOWAIT)
			       : preadv2(fd, iov, cnt, off, RWF_NOWAIT);
		if (r >= 0)
			return r;
		r = -errno;
		if (r == -EINTR)
			continue;
		if (r == -ESPIPE && off != -1) {
			off = -1;
			continue;
		}
		if (r != -EAGAIN && r != -EOPNOTSUPP)
			return r;
		err = weft__epoll_wait_fd(fd, wr ? EP_OUT : EP_IN);
		if (err == -EPERM || (r == -EOPNOTSUPP && err >= 0)) {
			b.off = off;
			return blk_call(&b);
		}
		if (err < 0)
			return err;
	}
}

static int ep_nonblock(int fd, int *old)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	*old = fl;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* The listener is left in non-blocking mode (accept4 has no per-call
 * flag, and a blocking accept that another acceptor raced to the
 * connection would block the worker); the sockets it gives are not. */
static int ep_accept(int fd, struct sockaddr *addr, socklen_t *addrlen,
		     int flags)
{
	WEFT__KEEP_ERRNO;
	int old = O_NONBLOCK, err = call_check(weft__worker_self(), false);

	if (err)
		return err;
	err = ep_nonblock(fd, &old);
	if (err)
		return err;
	ep_call(fd, EP_IN, false,
		accept4(fd, addr, addrlen, flags | SOCK_CLOEXEC));
}

/* A connect in progress is waited for as writability, and its outcome read
 * from SO_ERROR; the socket's own mode is put back afterwards. */
static int ep_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	WEFT__KEEP_ERRNO;
	int old = O_NONBLOCK, r, err = call_check(weft__worker_self(), false);

	if (err)
		return err;
	err = ep_nonblock(fd, &old);
	if (err)
		return err;
	for (;;) {
		r = connect(fd, addr, len) < 0 ? -errno : 0;
		if (r == -EINTR)
			continue;
		if (r == -EINPROGRESS) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);

			r = weft__epoll_wait_fd(fd, EP_OUT);
			if (r >= 0)
				r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr,
					       &sl) < 0
					    ? -errno
					    : -soerr;
		} else if (r == -EAGAIN) {
			/* A Unix socket whose listener's backlog is full:
			 * a blocking connect waits for room. */
			r = weft__epoll_wait_fd(fd, EP_OUT);
			if (r >= 0)
				continue;
		}
		break;
	}
	if (!(old & O_NONBLOCK))
		fcntl(fd, F_SETFL, old);
	return r;
}

/* ---- sockets ------------------------------------------------------------ */

int weft_socket(int domain, int type, int protocol)
{
	WEFT__KEEP_ERRNO;
	/* socket(2) never blocks: a direct call, errno read at once. */
	int fd = socket(domain, type | SOCK_CLOEXEC, protocol);

	return fd < 0 ? -errno : fd;
}

static int accept_call(int fd, struct sockaddr *addr, socklen_t *addrlen,
		       int flags)
{
	IO_CALL(io_uring_prep_accept(sqe_, fd, addr, addrlen,
				     flags | SOCK_CLOEXEC));
}

static int accept_unmetered(int fd, struct sockaddr *addr,
			    socklen_t *addrlen, int flags)
{
	int r = weft__epoll_on() ? ep_accept(fd, addr, addrlen, flags)
				 : accept_call(fd, addr, addrlen, flags);

	if (r >= 0 && addr && addrlen) {
		WEFT__DEFINED(addrlen, sizeof(*addrlen));
		filled(addr, (ssize_t)*addrlen);
	}
	return r;
}

int weft_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	METERED(WEFT_IO_ACCEPT, int, accept_unmetered(fd, addr, addrlen, flags));
}

static int connect_unmetered(int fd, const struct sockaddr *addr,
			     socklen_t addrlen)
{
	if (weft__epoll_on())
		return ep_connect(fd, addr, addrlen);
	IO_CALL(io_uring_prep_connect(sqe_, fd, addr, addrlen));
}

int weft_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	METERED(WEFT_IO_CONNECT, int, connect_unmetered(fd, addr, addrlen));
}

static ssize_t recv_call(int fd, void *buf, size_t len, int flags)
{
	if (weft__epoll_on())
		ep_call_in(fd, len, flags & MSG_DONTWAIT,
			   recv(fd, buf, len, flags | MSG_DONTWAIT));
	IO_CALL(io_uring_prep_recv(sqe_, fd, buf, sqe_len(len), flags));
}

static ssize_t recv_unmetered(int fd, void *buf, size_t len, int flags)
{
	return filled(buf, recv_call(fd, buf, len, flags));
}

ssize_t weft_recv(int fd, void *buf, size_t len, int flags)
{
	METERED(WEFT_IO_RECV, ssize_t, recv_unmetered(fd, buf, len, flags));
}

/* ---- receiving into lease buffers (runtime/pbuf.h) ---------------------
 * On io_uring with a provided-buffer ring the receive selects a buffer
 * from the worker's ring when data arrives (IOSQE_BUFFER_SELECT), so a
 * waiting call holds none. Otherwise (the epoll reactor, a kernel before
 * 5.19, or the ring empty: -ENOBUFS) the pool hands a buffer out and the
 * call receives into it as weft_recv() does; on epoll only once the
 * socket is readable. A buffer that got no bytes goes straight back.
 */
static ssize_t lease_from(struct weft__pbuf *p, int id, ssize_t n,
			  struct weft_lease *l)
{
	if (n > 0) {
		weft__pbuf_lease(p, (unsigned)id, (size_t)n, l);
		filled(l->data, n);
	} else {
		weft__pbuf_give(p, (unsigned)id);
	}
	return n;
}

/* One try on epoll: a buffer of the running worker's pool, a non-blocking
 * recv into it; -1 and errno as recv(2). */
static ssize_t lease_try(int fd, struct weft_lease *l, int flags)
{
	struct weft__pbuf *p = weft__pbuf_get(weft__worker_self());
	int id = p ? weft__pbuf_take(p) : -ENOMEM;
	ssize_t n;
	int e;

	if (id < 0) {
		errno = -id;
		return -1;
	}
	n = recv(fd, weft__pbuf_addr(p, (unsigned)id), WEFT_LEASE_SIZE,
		 flags | MSG_DONTWAIT);
	e = errno;
	lease_from(p, id, n, l);
	errno = e;
	return n;
}

/* On io_uring: the kernel picks the buffer. -ENOBUFS: the ring is empty. */
static ssize_t lease_select(struct weft__pbuf *p, int fd,
			    struct weft_lease *l, int flags)
{
	struct io io = { .nocancel = false };
	struct io_uring_sqe *sqe = io_begin(&io);
	ssize_t n;

	if (!sqe)
		return io.err;
	io_uring_prep_recv(sqe, fd, NULL, WEFT_LEASE_SIZE, flags);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = WEFT__PBUF_GROUP;
	n = io_wait(&io, sqe);
	if (io.op.cflags & IORING_CQE_F_BUFFER)
		return lease_from(p, (int)(io.op.cflags >> IORING_CQE_BUFFER_SHIFT),
				  n, l);
	return n;
}

static ssize_t recv_lease_unmetered(int fd, struct weft_lease *l, int flags)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__pbuf *p;
	ssize_t n;
	int id;

	if (!l)
		return -EINVAL;
	memset(l, 0, sizeof(*l));
	if (flags & (MSG_PEEK | MSG_WAITALL))
		return -EINVAL;
	if (weft__epoll_on())
		ep_call_in(fd, WEFT_LEASE_SIZE, flags & MSG_DONTWAIT,
			   lease_try(fd, l, flags));
	n = call_check(w, false);
	if (n)
		return n;
	p = weft__pbuf_get(w);
	if (!p)
		return -ENOMEM;
	if (weft__pbuf_ring(p)) {
		weft__pbuf_refill(p);
		n = lease_select(p, fd, l, flags);
		if (n != -ENOBUFS)
			return n;
		/* The task may have moved: the pool of where it runs. */
		p = weft__pbuf_get(weft__worker_self());
		if (!p)
			return -ENOMEM;
	}
	id = weft__pbuf_take(p);
	if (id < 0)
		return id;
	return lease_from(p, id, recv_call(fd, weft__pbuf_addr(p, (unsigned)id),
					   WEFT_LEASE_SIZE, flags), l);
}

ssize_t weft_recv_lease(int fd, struct weft_lease *l, int flags)
{
	METERED(WEFT_IO_RECV, ssize_t, recv_lease_unmetered(fd, l, flags));
}

int weft_lease_release(struct weft_lease *l)
{
	return weft__pbuf_release(l);
}

/* ---- receive streams (runtime/stream.h) ----------------------------------
 * A weft_stream is the reactor's record (struct weft__stream, type-stable
 * on its worker until the runtime ends). The task is pinned to its worker
 * while it has a stream open, so every call below runs on the stream's
 * worker, where its completions arrive: the queue, the flags and the
 * arming are that worker's alone. A waiting task is woken by
 * weft__stream_cqe() (reap, on the same worker) through the park
 * protocol; a cancellation or deadline ends the wait without touching the
 * request, which goes on filling the queue.
 *
 * On the epoll reactor, and where no buffer ring could be registered or
 * the kernel refuses multishot receives, a stream is `single`: a
 * weft_recv_lease() per call.
 */
/* A handle names one opening of a record (weft__stream_handle(),
 * stream.h): one kept past its close is refused even once a later open
 * has taken the same record. */
static struct weft__stream *stream_of(weft_stream *st)
{
	return weft__stream_from_handle(st, WEFT__STREAM_MAGIC);
}

/* The task (the caller itself) has no stream open any more: the pin its
 * first stream put is taken off. Its own flags, written by it (relaxed:
 * a waker reads them after the park's acq_rel exchange, wait.h). */
static void stream_unpin(struct weft__tcb *self)
{
	unsigned f = weft__task_flags(self);

	if (!self->streams && (f & WEFT__T_STREAM_PIN))
		atomic_store_explicit(&self->flags,
				      f & ~(WEFT__T_PINNED | WEFT__T_STREAM_PIN),
				      memory_order_relaxed);
}

/* The first stream (of either kind) pins the task (unless its spawner
 * did) to the worker with the fewest streams, whichever way the stream
 * works, so that what weft.h says holds everywhere: connection tasks,
 * which usually start on their acceptor's worker, spread over the
 * workers here, since they cannot be stolen later. Pinned to another
 * worker, the task's yield takes it there (weft__worker_schedule()), and
 * *w is then that worker. The flags are the task's own, written by it
 * (wait.h orders them for wakers). Returns whether the task was placed
 * (the worker's count then holds the stream, weft__stream_place()). */
static bool stream_pin(struct weft__tcb *self, struct weft__worker **w)
{
	unsigned f = weft__task_flags(self);
	struct weft__worker *to;

	if (self->streams || (f & WEFT__T_PINNED))
		return false;
	to = weft__stream_place(*w);
	weft__task_set_home(self, to);
	atomic_store_explicit(&self->flags,
			      f | WEFT__T_PINNED | WEFT__T_STREAM_PIN,
			      memory_order_relaxed);
	if (to != *w) {
		weft_yield(); /* to `to`; a cancellation waits */
		*w = weft__worker_self();
	}
	return true;
}

/* Opens the calling task's stream record on fd, pinned as stream_pin()
 * says: an accept stream (a listener) queueing up to backlog descriptors
 * if accept, else a receive stream. Its handle in *out. */
static int owned_open(void **out, int fd, bool accept, unsigned backlog)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__stream *s;
	struct weft__tcb *self;
	bool placed;
	int err;

	err = call_check(w, true);
	if (err)
		return err;
	self = w->current;
	placed = stream_pin(self, &w);
	s = accept ? weft__stream_new_accept(w, fd, placed, backlog)
		   : weft__stream_new(w, fd, placed);
	if (!s) {
		if (placed)
			weft__stream_uncount(w);
		stream_unpin(self);
		return -ENOMEM;
	}
	self->streams++;
	/* One call at a time where there is no multishot request: on the
	 * epoll reactor, and for receives without a buffer ring. */
	s->single = w->ring.epoll || (!accept && !weft__pbuf_ring(s->p));
	*out = weft__stream_handle(s);
	return 0;
}

int weft_stream_open(weft_stream **out, int fd)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return owned_open((void **)out, fd, false, 0);
}

struct stream_waiting {
	struct weft__wait wt;
	struct weft__stream *s;
};

static bool stream_ready(struct weft__wait *wt)
{
	struct weft__stream *s = ((struct stream_waiting *)wt)->s;

	/* A receive stream's bytes, an accept stream's descriptors or
	 * error, or the request's end. */
	return s->q.head || s->fd_n || s->err || !s->armed;
}

/* Cancelled or timed out: the wait ends; the request goes on. */
static bool stream_give_up(struct weft__wait *wt, int why)
{
	wt->res = why;
	return true;
}

static ssize_t stream_recv_unmetered(weft_stream *st, struct weft_lease *l)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__stream *s = stream_of(st);
	struct stream_waiting u;
	unsigned len;
	int id, err;

	if (!l)
		return -EINVAL;
	memset(l, 0, sizeof(*l));
	if (!s)
		return -EINVAL;
	if (!w || w->current != s->task)
		return -EPERM;
	weft__assert(s->w == w);
	err = call_check(w, false);
	if (err)
		return err;
	for (;;) {
		id = weft__pbuf_q_pop(s->p, &s->q, &len);
		if (id >= 0) {
			weft__pbuf_lease(s->p, (unsigned)id, len, l);
			return filled(l->data, (ssize_t)len);
		}
		if (s->end)
			return s->end > 0 ? 0 : s->end;
		/* The unmetered call: weft_stream_recv() counts this
		 * receive once. */
		if (s->single)
			return recv_lease_unmetered(s->fd, l, 0);
		if (!s->armed) {
			/* Out of buffers last time: this once without the
			 * ring's (it then has room again, or an overflow
			 * buffer is used); armed again at the next call. */
			if (s->starved) {
				s->starved = false;
				return recv_lease_unmetered(s->fd, l, 0);
			}
			err = weft__stream_arm(s);
			if (err)
				return err;
		}
		u.s = s;
		weft__wait_init(&u.wt, w, w->current->deadline);
		weft__wait_for(&u.wt, WEFT__W_STREAM, NULL, s->fd);
		s->waiting = true;
		err = weft__wait(&u.wt, stream_ready, stream_give_up);
		s->waiting = false;
		if (err)
			return err;
	}
}

ssize_t weft_stream_recv(weft_stream *st, struct weft_lease *l)
{
	METERED(WEFT_IO_RECV, ssize_t, stream_recv_unmetered(st, l));
}

/* Closes stream or listener s (NULL: the handle was stale or not one)
 * for the task that owns it; the owner's last one unpins it. */
static int owned_close(struct weft__stream *s)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tcb *self;

	if (!s)
		return -EINVAL;
	if (!w || w->current != s->task)
		return -EPERM;
	self = w->current;
	weft__stream_close(s);
	self->streams--;
	stream_unpin(self);
	return 0;
}

int weft_stream_close(weft_stream *st)
{
	WEFT__KEEP_ERRNO;

	return owned_close(stream_of(st));
}

/* ---- listeners: accept streams (runtime/stream.h) ------------------------
 * A weft_listener is a stream record of the accept kind, opened, pinned
 * and owned as a receive stream is (above): one task, on one worker,
 * where the multishot accept's completions queue descriptors. A waiting
 * accept is woken by weft__stream_cqe() through the park protocol; a
 * cancellation or deadline ends the wait and leaves the request and the
 * queue as they are, so no accepted connection is lost: the next call
 * takes it.
 *
 * Where there is no multishot accept (the epoll reactor; a kernel before
 * 5.19, which refuses it at the first arming; the WEFT_DEBUG_NO_MULTISHOT
 * hook) a listener is `single`: a weft_accept() per call.
 */
static struct weft__stream *listener_of(weft_listener *ls)
{
	return weft__stream_from_handle(ls, WEFT__LISTENER_MAGIC);
}

int weft_listener_open(weft_listener **out, int fd, unsigned backlog)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (fd < 0 || backlog > WEFT__LISTENER_MAX)
		return -EINVAL;
	return owned_open((void **)out, fd, true,
			  backlog ? backlog : WEFT_LISTENER_BACKLOG);
}

/* The address of a queued connection, asked of the socket: its accept
 * wrote none. A peer that has reset the connection since has none any
 * more (-ENOTCONN): *addrlen is then 0, and the descriptor is still the
 * caller's, whose first read reports the reset. */
static void peer_address(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
	if (!addr || !addrlen)
		return;
	if (getpeername(fd, addr, addrlen) < 0)
		*addrlen = 0;
	else
		filled(addr, (ssize_t)*addrlen);
}

#define WEFT__LISTENER_FLAGS (SOCK_NONBLOCK | SOCK_CLOEXEC)

static int listener_accept_unmetered(weft_listener *ls, struct sockaddr *addr,
				     socklen_t *addrlen, int flags)
{
	WEFT__KEEP_ERRNO;
	struct weft__worker *w = weft__worker_self();
	struct weft__stream *s = listener_of(ls);
	struct stream_waiting u;
	int fd, err;

	if (!s || (flags & ~WEFT__LISTENER_FLAGS) || (addr && !addrlen))
		return -EINVAL;
	if (!w || w->current != s->task)
		return -EPERM;
	weft__assert(s->w == w);
	err = call_check(w, false);
	if (err)
		return err;
	for (;;) {
		fd = weft__stream_fd_pop(s);
		if (fd >= 0) {
			/* Taken down to half the bound after a stop: armed
			 * again, so the queue refills while the program
			 * works through the rest. */
			if (!s->armed && !s->single && !s->err &&
			    s->fd_n <= s->bound / 2)
				(void)weft__stream_arm(s); /* next call sees */
			if (flags & SOCK_NONBLOCK) {
				/* Accepted without it; set as accept4 would. */
				int fl = fcntl(fd, F_GETFL);

				if (fl < 0 ||
				    fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
					err = -errno;
					close(fd);
					return err;
				}
			}
			peer_address(fd, addr, addrlen);
			return fd;
		}
		if (s->err) {
			err = s->err;
			s->err = 0;
			return err;
		}
		if (s->single)
			return accept_unmetered(s->fd, addr, addrlen, flags);
		if (!s->armed) {
			err = weft__stream_arm(s);
			if (err)
				return err;
		}
		u.s = s;
		weft__wait_init(&u.wt, w, w->current->deadline);
		/* The multishot accept armed in the ring: what weft_accept()
		 * would record for the same descriptor. */
		weft__wait_for(&u.wt, WEFT__W_IO, NULL,
			       (int64_t)((uint64_t)IORING_OP_ACCEPT << 32 |
					 (uint32_t)s->fd));
		s->waiting = true;
		err = weft__wait(&u.wt, stream_ready, stream_give_up);
		s->waiting = false;
		if (err)
			return err;
	}
}

int weft_listener_accept(weft_listener *ls, struct sockaddr *addr,
			 socklen_t *addrlen, int flags)
{
	METERED(WEFT_IO_ACCEPT, int, listener_accept_unmetered(ls, addr, addrlen, flags));
}

int weft_listener_close(weft_listener *ls)
{
	WEFT__KEEP_ERRNO;

	return owned_close(listener_of(ls));
}

static ssize_t send_unmetered(int fd, const void *buf, size_t len, int flags)
{
	if (weft__epoll_on())
		ep_call(fd, EP_OUT, flags & MSG_DONTWAIT,
			send(fd, buf, len, flags | MSG_DONTWAIT | MSG_NOSIGNAL));
	IO_CALL(io_uring_prep_send(sqe_, fd, buf, sqe_len(len),
				   flags | MSG_NOSIGNAL));
}

ssize_t weft_send(int fd, const void *buf, size_t len, int flags)
{
	METERED(WEFT_IO_SEND, ssize_t, send_unmetered(fd, buf, len, flags));
}

static ssize_t recvmsg_call(int fd, struct msghdr *msg, int flags)
{
	if (weft__epoll_on())
		ep_call(fd, EP_IN, flags & MSG_DONTWAIT,
			recvmsg(fd, msg, flags | MSG_DONTWAIT));
	IO_CALL(io_uring_prep_recvmsg(sqe_, fd, msg, (unsigned)flags));
}

static ssize_t recvmsg_unmetered(int fd, struct msghdr *msg, int flags)
{
	ssize_t n = recvmsg_call(fd, msg, flags);

	if (n >= 0 && msg) {
		WEFT__DEFINED(&msg->msg_namelen, sizeof(msg->msg_namelen));
		WEFT__DEFINED(&msg->msg_controllen,
			      sizeof(msg->msg_controllen));
		WEFT__DEFINED(&msg->msg_flags, sizeof(msg->msg_flags));
		if (msg->msg_name)
			filled(msg->msg_name, (ssize_t)msg->msg_namelen);
		if (msg->msg_control)
			filled(msg->msg_control, (ssize_t)msg->msg_controllen);
		filled_iov(msg->msg_iov, msg->msg_iovlen, n);
	}
	return n;
}

ssize_t weft_recvmsg(int fd, struct msghdr *msg, int flags)
{
	METERED(WEFT_IO_RECV, ssize_t, recvmsg_unmetered(fd, msg, flags));
}

static ssize_t sendmsg_unmetered(int fd, const struct msghdr *msg, int flags)
{
	if (weft__epoll_on())
		ep_call(fd, EP_OUT, flags & MSG_DONTWAIT,
			sendmsg(fd, msg,
				flags | MSG_DONTWAIT | MSG_NOSIGNAL));
	IO_CALL(io_uring_prep_sendmsg(sqe_, fd, msg,
				      (unsigned)flags | MSG_NOSIGNAL));
}

ssize_t weft_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	METERED(WEFT_IO_SEND, ssize_t, sendmsg_unmetered(fd, msg, flags));
}

ssize_t weft_recvfrom(int fd, void *buf, size_t len, int flags,
		      struct sockaddr *addr, socklen_t *addrlen)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { 0 };
	ssize_t n;

	msg.msg_name = addr;
	msg.msg_namelen = addr && addrlen ? *addrlen : 0;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	n = weft_recvmsg(fd, &msg, flags);
	if (n >= 0 && addr && addrlen)
		*addrlen = msg.msg_namelen;
	return n;
}

ssize_t weft_sendto(int fd, const void *buf, size_t len, int flags,
		    const struct sockaddr *addr, socklen_t addrlen)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { 0 };

	msg.msg_name = (void *)addr;
	msg.msg_namelen = addr ? addrlen : 0;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	return weft_sendmsg(fd, &msg, flags);
}

static int shutdown_unmetered(int fd, int how)
{
	if (weft__epoll_on()) {
		WEFT__KEEP_ERRNO;
		int err = call_check(weft__worker_self(), false);

		if (err)
			return err;
		return shutdown(fd, how) < 0 ? -errno : 0;
	}
	IO_CALL(io_uring_prep_shutdown(sqe_, fd, how));
}

int weft_shutdown(int fd, int how)
{
	METERED(WEFT_IO_OTHER, int, shutdown_unmetered(fd, how));
}

/* Always closes: a cancellation or a passed deadline must not leave the
 * descriptor open (close is where cleanup code ends up). */
static int close_unmetered(int fd)
{
	WEFT__KEEP_ERRNO;
	struct io io = { .nocancel = true };
	struct io_uring_sqe *sqe;

	int r;

	/* On epoll: a plain close(2), then the tasks that waited on the
	 * descriptor try again (runtime/epoll.c). Not in a task: close(2). */
	if (weft__epoll_on()) {
		r = close(fd) < 0 ? -errno : 0;
		weft__epoll_closed(fd);
		return r;
	}
	if (!(sqe = io_begin(&io)))
		return close(fd) < 0 ? -errno : 0;
	io_uring_prep_close(sqe, fd);
	return io_wait(&io, sqe);
}

int weft_close(int fd)
{
	METERED(WEFT_IO_OTHER, int, close_unmetered(fd));
}

/* ---- readiness ---------------------------------------------------------- */

/* One-shot poll (IORING_OP_POLL_ADD) for descriptors that have no read or
 * write to wait with, such as a pidfd (io/proc.c). Cancellation and the
 * deadline come from io_wait() as for any request. */
static int ops_poll_unmetered(int fd, unsigned events)
{
	if (weft__epoll_on()) {
		int err = call_check(weft__worker_self(), false);

		return err ? err : weft__epoll_wait_fd(fd, events);
	}
	IO_CALL(io_uring_prep_poll_add(sqe_, fd, events));
}

int weft__ops_poll(int fd, unsigned events)
{
	METERED(WEFT_IO_POLL, int, ops_poll_unmetered(fd, events));
}

/* ---- files -------------------------------------------------------------- */

/* block: IOSQE_ASYNC, so the kernel skips its non-blocking first try and
 * opens on an io-wq thread, where the open may wait. */
static int openat_call(int dirfd, const char *path, int flags, mode_t mode,
		       bool block)
{
	struct io io = { .nocancel = false };
	struct io_uring_sqe *sqe = io_begin(&io);

	if (!sqe)
		return io.err;
	io_uring_prep_openat(sqe, dirfd, path, flags | O_CLOEXEC, mode);
	if (block)
		sqe->flags |= IOSQE_ASYNC;
	return io_wait(&io, sqe);
}

/*
 * io_uring first tries an open with O_NONBLOCK added (clearing it again on
 * the new file). For a FIFO opened for writing with no reader that try
 * fails with -ENXIO where openat(2) would wait for a reader (issue 15 #6):
 * unless the caller asked for O_NONBLOCK, -ENXIO is tried again as a
 * blocking open. Other -ENXIO (a socket file, a device with no device
 * behind it) come back the same from the second try; only the error path
 * pays for it.
 */
/*
 * The epoll reactor's open, io_uring's in effect: an open that would not
 * wait (O_NONBLOCK added, cleared again on the new descriptor unless asked
 * for), done here when the kernel can resolve the path from its caches
 * (openat2's RESOLVE_CACHED, 5.12+), else on the blocking pool. A FIFO
 * opened for writing with no reader (-ENXIO) is tried again every few
 * milliseconds (1, doubling to 64) until a reader comes or the task is
 * cancelled or its deadline passes: there is no readiness to wait for,
 * and a pool thread blocked in open(2) could not be interrupted.
 */
static int ep_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	struct open_how how = { 0 };
	struct blk b = { .kind = BLK_OPENAT, .fd = dirfd, .path = path,
			 .flags = flags | O_CLOEXEC | O_NONBLOCK, .mode = mode };
	uint64_t nap = WEFT_NSEC_PER_SEC / 1000;
	WEFT__KEEP_ERRNO;
	int fd, err = call_check(weft__worker_self(), false);

	if (err)
		return err;
	how.flags = (uint64_t)(unsigned)b.flags;
	how.mode = flags & (O_CREAT | O_TMPFILE) ? mode : 0;
	how.resolve = RESOLVE_CACHED;
	for (;;) {
		fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
		if (fd < 0)
			fd = -errno;
		if (fd == -EAGAIN || fd == -ENOSYS || fd == -EPERM ||
		    (fd == -EINVAL && path))
			fd = (int)blk_call(&b);
		if (fd != -ENXIO || (flags & O_NONBLOCK))
			break;
		err = weft_sleep(nap);
		if (err < 0)
			return err;
		if (nap < 64 * WEFT_NSEC_PER_SEC / 1000)
			nap *= 2;
	}
	if (fd >= 0 && !(flags & O_NONBLOCK)) {
		int fl = fcntl(fd, F_GETFL);

		if (fl >= 0)
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	}
	return fd;
}

static int openat_unmetered(int dirfd, const char *path, int flags, mode_t mode)
{
	int fd;

	if (weft__epoll_on())
		return ep_openat(dirfd, path, flags, mode);
	fd = openat_call(dirfd, path, flags, mode, false);

	if (fd == -ENXIO && !(flags & O_NONBLOCK))
		fd = openat_call(dirfd, path, flags, mode, true);
	return fd;
}

int weft_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	METERED(WEFT_IO_OTHER, int, openat_unmetered(dirfd, path, flags, mode));
}

int weft_open(const char *path, int flags, mode_t mode)
{
	return weft_openat(AT_FDCWD, path, flags, mode);
}

static ssize_t read_call(int fd, void *buf, size_t len, int64_t offset)
{
	IO_CALL(io_uring_prep_read(sqe_, fd, buf, sqe_len(len),
				   (uint64_t)offset));
}

static ssize_t read_unmetered(int fd, void *buf, size_t len, int64_t offset)
{
	if (weft__epoll_on()) {
		struct iovec iov = { buf, len };

		return ep_rw(false, fd, &iov, 1, offset);
	}
	return filled(buf, read_call(fd, buf, len, offset));
}

ssize_t weft_read(int fd, void *buf, size_t len, int64_t offset)
{
	METERED(WEFT_IO_READ, ssize_t, read_unmetered(fd, buf, len, offset));
}

static ssize_t write_unmetered(int fd, const void *buf, size_t len,
			       int64_t offset)
{
	if (weft__epoll_on()) {
		struct iovec iov = { (void *)buf, len };

		return ep_rw(true, fd, &iov, 1, offset);
	}
	IO_CALL(io_uring_prep_write(sqe_, fd, buf, sqe_len(len),
				    (uint64_t)offset));
}

ssize_t weft_write(int fd, const void *buf, size_t len, int64_t offset)
{
	METERED(WEFT_IO_WRITE, ssize_t, write_unmetered(fd, buf, len, offset));
}

static ssize_t readv_call(int fd, const struct iovec *iov, int iovcnt,
			  int64_t offset)
{
	IO_CALL(io_uring_prep_readv(sqe_, fd, iov, (unsigned)iovcnt,
				    (uint64_t)offset));
}

static ssize_t readv_unmetered(int fd, const struct iovec *iov, int iovcnt,
		   int64_t offset)
{
	if (iovcnt < 0)
		return -EINVAL;
	if (weft__epoll_on())
		return ep_rw(false, fd, iov, iovcnt, offset);
	return filled_iov(iov, (size_t)iovcnt,
			  readv_call(fd, iov, iovcnt, offset));
}

ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt,
		   int64_t offset)
{
	METERED(WEFT_IO_READ, ssize_t, readv_unmetered(fd, iov, iovcnt, offset));
}

static ssize_t writev_unmetered(int fd, const struct iovec *iov, int iovcnt,
		    int64_t offset)
{
	if (iovcnt < 0)
		return -EINVAL;
	if (weft__epoll_on())
		return ep_rw(true, fd, iov, iovcnt, offset);
	IO_CALL(io_uring_prep_writev(sqe_, fd, iov, (unsigned)iovcnt,
				     (uint64_t)offset));
}

ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt,
		    int64_t offset)
{
	METERED(WEFT_IO_WRITE, ssize_t, writev_unmetered(fd, iov, iovcnt, offset));
}

static int fsync_unmetered(int fd)
{
	if (weft__epoll_on()) {
		struct blk b = { .kind = BLK_FSYNC, .fd = fd };

		return (int)blk_call(&b);
	}
	IO_CALL(io_uring_prep_fsync(sqe_, fd, 0));
}

int weft_fsync(int fd)
{
	METERED(WEFT_IO_OTHER, int, fsync_unmetered(fd));
}

static int fdatasync_unmetered(int fd)
{
	if (weft__epoll_on()) {
		struct blk b = { .kind = BLK_FDATASYNC, .fd = fd };

		return (int)blk_call(&b);
	}
	IO_CALL(io_uring_prep_fsync(sqe_, fd, IORING_FSYNC_DATASYNC));
}

int weft_fdatasync(int fd)
{
	METERED(WEFT_IO_OTHER, int, fdatasync_unmetered(fd));
}

static void statx_to_stat(const struct statx *x, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_dev = makedev(x->stx_dev_major, x->stx_dev_minor);
	st->st_ino = x->stx_ino;
	st->st_mode = x->stx_mode;
	st->st_nlink = x->stx_nlink;
	st->st_uid = x->stx_uid;
	st->st_gid = x->stx_gid;
	st->st_rdev = makedev(x->stx_rdev_major, x->stx_rdev_minor);
	st->st_size = (off_t)x->stx_size;
	st->st_blksize = x->stx_blksize;
	st->st_blocks = (blkcnt_t)x->stx_blocks;
	st->st_atim.tv_sec = x->stx_atime.tv_sec;
	st->st_atim.tv_nsec = x->stx_atime.tv_nsec;
	st->st_mtim.tv_sec = x->stx_mtime.tv_sec;
	st->st_mtim.tv_nsec = x->stx_mtime.tv_nsec;
	st->st_ctim.tv_sec = x->stx_ctime.tv_sec;
	st->st_ctim.tv_nsec = x->stx_ctime.tv_nsec;
}

static int statx_ring(int dirfd, const char *path, int flags,
		      struct statx *x)
{
	if (weft__epoll_on()) {
		struct blk b = { .kind = BLK_STATX, .fd = dirfd, .path = path,
				 .flags = flags, .stx = x };

		return (int)blk_call(&b);
	}
	IO_CALL(io_uring_prep_statx(sqe_, dirfd, path, flags,
				    STATX_BASIC_STATS, x));
}

static int statx_call_unmetered(int dirfd, const char *path, int flags,
		      struct statx *x)
{
	int r = statx_ring(dirfd, path, flags, x);

	if (r == 0)
		WEFT__DEFINED(x, sizeof(*x));
	return r;
}

static int statx_call(int dirfd, const char *path, int flags,
		      struct statx *x)
{
	METERED(WEFT_IO_OTHER, int, statx_call_unmetered(dirfd, path, flags, x));
}

int weft_stat(const char *path, struct stat *st)
{
	struct statx x;
	int err;

	if (!path || !st)
		return -EINVAL;
	err = statx_call(AT_FDCWD, path, 0, &x);
	if (err == 0)
		statx_to_stat(&x, st);
	return err;
}

int weft_fstat(int fd, struct stat *st)
{
	struct statx x;
	int err;

	if (!st)
		return -EINVAL;
	err = statx_call(fd, "", AT_EMPTY_PATH, &x);
	if (err == 0)
		statx_to_stat(&x, st);
	return err;
}

/* ---- loops -------------------------------------------------------------- */

ssize_t weft_read_exact(int fd, void *buf, size_t len, int64_t offset)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = weft_read(fd, (char *)buf + got, len - got,
				      offset < 0 ? -1 : offset + (int64_t)got);
		if (n < 0)
			return n;
		if (n == 0)
			break; /* end of file */
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/*
 * weft_writev_all(), counting progress. The caller's vector is not
 * changed: each call writes a window of at most WEFT__IOV_WINDOW entries
 * copied to the stack, the first one advanced past what went out before,
 * entries of length 0 left out.
 */
#define WEFT__IOV_WINDOW 64

ssize_t weft__ops_writev_all(int fd, const struct iovec *iov, int iovcnt,
			     int64_t offset, size_t *done)
{
	bool sock = offset < 0; /* sendmsg first: MSG_NOSIGNAL */
	size_t total = 0, put = 0, skip = 0;
	int i = 0;

	*done = 0;
	if (iovcnt < 0 || (!iov && iovcnt > 0))
		return -EINVAL;
	for (int k = 0; k < iovcnt; k++) {
		if (iov[k].iov_len > (size_t)SSIZE_MAX - total)
			return -EINVAL;
		total += iov[k].iov_len;
	}
	while (put < total) {
		struct iovec win[WEFT__IOV_WINDOW];
		size_t adv;
		ssize_t r;
		int n = 0;

		for (int k = i; k < iovcnt && n < WEFT__IOV_WINDOW; k++) {
			size_t off = k == i ? skip : 0;

			if (iov[k].iov_len == off)
				continue;
			win[n].iov_base = (char *)iov[k].iov_base + off;
			win[n].iov_len = iov[k].iov_len - off;
			n++;
		}
		if (sock) {
			struct msghdr m = { .msg_iov = win,
					    .msg_iovlen = (size_t)n };

			r = weft_sendmsg(fd, &m, 0);
			if (r == -ENOTSOCK) {
				sock = false;
				continue;
			}
		} else {
			r = weft_writev(fd, win, n,
					offset < 0 ? -1 : offset + (int64_t)put);
		}
		if (r < 0)
			return r;
		if (r == 0)
			return -EIO; /* no progress: would loop forever */
		put += (size_t)r;
		*done = put;
		for (adv = (size_t)r; adv;) {
			size_t left = iov[i].iov_len - skip;

			if (adv < left) {
				skip += adv;
				adv = 0;
			} else {
				adv -= left;
				i++;
				skip = 0;
			}
		}
	}
	return (ssize_t)total;
}

ssize_t weft_writev_all(int fd, const struct iovec *iov, int iovcnt,
			int64_t offset)
{
	size_t done;

	return weft__ops_writev_all(fd, iov, iovcnt, offset, &done);
}

ssize_t weft_write_all(int fd, const void *buf, size_t len, int64_t offset)
{
	bool sock = offset < 0; /* try send() first: MSG_NOSIGNAL */
	size_t put = 0;

	while (put < len) {
		ssize_t n;

		if (sock) {
			n = weft_send(fd, (const char *)buf + put, len - put, 0);
			if (n == -ENOTSOCK) {
				sock = false;
				continue;
			}
		} else {
			n = weft_write(fd, (const char *)buf + put, len - put,
				       offset < 0 ? -1
						  : offset + (int64_t)put);
		}
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO; /* no progress: would loop forever */
		put += (size_t)n;
	}
	return (ssize_t)len;
}
