/*
 * Each worker's io_uring: creation with the best flags the kernel accepts,
 * parking (blocking in the ring) and waking a parked worker from another
 * thread.
 *
 * Flags: SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG (6.1+) first: only the
 * owning worker ever submits, completions are processed when it asks for
 * them, not by interrupting it, and the kernel flags when there are some
 * to ask for (ring_needs_events()). On EINVAL we retry with SINGLE_ISSUER|COOP_TASKRUN|
 * TASKRUN_FLAG (6.0), COOP_TASKRUN (5.19), then none (Photon strips flags
 * the same way). The ring is created on the worker's own thread, which is
 * what SINGLE_ISSUER binds it to.
 *
 * Wake-ups. Two mechanisms, chosen per runtime (weft_config.wake_mode):
 *   eventfd   the ring keeps an 8-byte read armed on an eventfd; any thread
 *             wakes the worker with write(2). Works from foreign threads and
 *             never touches the target's ring, so SINGLE_ISSUER holds.
 *   MSG_RING  a waker that is itself a worker posts a CQE straight into the
 *             target ring from its own ring (5.18+); foreign threads still
 *             use the eventfd. Measured against the eventfd by
 *             bench/wake_latency (docs/design/scheduler.md): about 12%
 *             faster per round trip than the eventfd here, so it is the
 *             default for worker-to-worker wakes. A failed MSG_RING (an old
 *             kernel) falls back to the eventfd for that wake, at once
 *             (weft__ring_wake()).
 * Both stay pending until the target waits, so a wake sent before the
 * target blocks is not lost.
 *
 * Errors of io_uring_enter are retried or end the runtime (ring_failed()).
 * At shutdown each worker cancels and reaps what is still in flight on its
 * ring, on its own thread, before any task stack is freed
 * (weft__ring_quiesce()); the ring itself is closed later, from whichever
 * thread releases the runtime (weft__ring_fini()).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base.h"
#include "epoll.h"
#include "idle.h"
#include "pbuf.h"
#include "stream.h"
#include "ring.h"
#include "runtime.h"
#include "spin.h"
#include "task.h"
#include "worker.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

/* user_data of the ring's own requests. I/O requests carry a pointer to
 * their operation, 8-byte aligned, so the low three bits tell them apart:
 *   1           the armed eventfd read completed (we were woken)
 *   2           a MSG_RING wake-up arrived from another worker
 *   worker | 2  our MSG_RING to that worker failed (success posts nothing,
 *               IOSQE_CQE_SKIP_SUCCESS): wake it through its eventfd. */
#define WEFT__UD_TAG_MASK 7u
#define WEFT__UD_WAKE_EFD 1u
#define WEFT__UD_WAKE_MSG 2u
/* Requests whose completion nobody waits for (cancellations), and failed
 * MSG_RING completions already handled by weft__ring_wake(). */
#define WEFT__UD_IGNORE 3u
/* op | 4: a multishot request's completions (a receive or accept
 * stream's, stream.c); the request goes on while IORING_CQE_F_MORE is
 * set. */
#define WEFT__UD_MULTI 4u

/*
 * Test hooks, debug builds only, read from the environment by each worker
 * at ring set-up:
 *   WEFT_DEBUG_MSG_RING_FAIL=1  every MSG_RING wake fails in the kernel
 *       (it names no ring: -EBADF), as on a kernel without MSG_RING, so
 *       that tests can reach the eventfd fallback (relaxed: any reader's
 *       value is the same);
 *   WEFT_DEBUG_RING_FLAGS=n  the setup flags start at ring_flag_tries[n],
 *       as on a kernel that refused the n before (2: no SINGLE_ISSUER, as
 *       before 6.0);
 *   WEFT_DEBUG_SQ_BUSY=n  the next n times an SQE is asked for, the SQ is
 *       taken to be full and the kernel to refuse the submit (-EBUSY), so
 *       tests can reach get_sqe()'s reap (a process-wide count, set by
 *       each ring set-up that finds the variable).
 */
#ifndef NDEBUG
static atomic_int debug_msg_ring_fail;
static atomic_int debug_sq_busy;
#define DEBUG_MSG_RING_FAIL() \
	atomic_load_explicit(&debug_msg_ring_fail, memory_order_relaxed)
static bool debug_sq_busy_take(void)
{
	int n = atomic_load_explicit(&debug_sq_busy, memory_order_relaxed);

	while (n > 0 && !atomic_compare_exchange_weak_explicit(
				&debug_sq_busy, &n, n - 1, memory_order_relaxed,
				memory_order_relaxed))
		;
	return n > 0;
}
#define DEBUG_SQ_BUSY() debug_sq_busy_take()
#else
#define DEBUG_MSG_RING_FAIL() 0
#define DEBUG_SQ_BUSY() false
#endif

static const unsigned ring_flag_tries[] = {
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
		IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	0,
};

/* The multishot request of a WEFT__UD_MULTI user_data. */
static inline struct weft__op *multi_op(uint64_t ud)
{
	return (struct weft__op *)(uintptr_t)(ud & ~(uint64_t)WEFT__UD_TAG_MASK);
}

/* The request a CQE's user_data names, or NULL for the ring's own. */
static inline struct weft__op *ud_op(uint64_t ud)
{
	return ud & WEFT__UD_TAG_MASK ? NULL
				      : (struct weft__op *)(uintptr_t)ud;
}

static void reap(struct weft__worker *w);
static void op_unlink(struct weft__worker *w, struct weft__op *op);
static void op_finish(struct weft__op *op, int res, unsigned cflags,
		      bool draining);
static void op_cancel_all(struct weft__worker *w);
static void kick_install(void);

/*
 * Errors of io_uring_enter (every submit, wait and get_events goes
 * through it). Each one either passes or ends the runtime:
 *   -EINTR            a signal arrived: the caller's loop tries again.
 *   -EAGAIN, -EBUSY   the kernel has no room for now (requests it could
 *                     not allocate, completions backlogged on kernels
 *                     without NODROP): reaping frees it; the callers reap
 *                     before they retry.
 *   -ETIME            a timed wait ended.
 *   anything else     the ring will not work again: io_uring_enter refused
 *                     (seccomp: -EPERM, -EACCES, -ENOSYS), the ring gone
 *                     (-EBADF, -ENXIO), called from a thread that does not
 *                     own it (-EEXIST), its memory bad (-EFAULT). A worker
 *                     that cannot wait in its ring would spin, and one
 *                     that cannot submit never serves: the runtime records
 *                     the first such error in rt->fatal (relaxed CAS; read
 *                     after the joins, which order it), stops (stopping,
 *                     seq_cst, as task.c does at main's end) and wakes
 *                     every worker through its eventfd, which needs no
 *                     ring. weft_run() returns the error (runtime.c).
 * Returns whether r is such a fatal error.
 */
static bool ring_failed(struct weft__worker *w, int r)
{
	struct weft_runtime *rt = w->rt;
	int none = 0;

	if (r >= 0 || r == -EINTR || r == -EAGAIN || r == -EBUSY ||
	    r == -ETIME)
		return false;
	atomic_compare_exchange_strong_explicit(&rt->fatal, &none, r,
						memory_order_relaxed,
						memory_order_relaxed);
	if (!atomic_exchange_explicit(&rt->stopping, 1, memory_order_seq_cst))
		weft__idle_wake_all(rt);
	return true;
}

bool weft__ring_failed(struct weft__worker *w, int r)
{
	return ring_failed(w, r);
}

/*
 * A free submission entry: when the SQ is full, what is queued goes to the
 * kernel and we retry. If the kernel will not take it for now (-EBUSY,
 * -EAGAIN), completions are collected first, which is what frees it.
 * NULL only if the ring failed for good (ring_failed()): nothing queued
 * will ever be submitted then.
 */
static struct io_uring_sqe *get_sqe_reaping(struct weft__worker *w,
					    bool *reaped)
{
	bool busy = DEBUG_SQ_BUSY();
	struct io_uring_sqe *sqe = busy ? NULL : io_uring_get_sqe(&w->ring.uring);

	while (!sqe) {
		int r = busy ? -EBUSY : io_uring_submit(&w->ring.uring);

		if (ring_failed(w, r))
			return NULL;
		if (r < 0 && r != -EINTR) {
			if (ring_failed(w, io_uring_get_events(&w->ring.uring)))
				return NULL;
			reap(w);
			*reaped = true;
		}
		busy = false;
		sqe = io_uring_get_sqe(&w->ring.uring);
	}
	return sqe;
}

static struct io_uring_sqe *get_sqe(struct weft__worker *w)
{
	bool reaped = false;

	return get_sqe_reaping(w, &reaped);
}

struct io_uring_sqe *weft__ring_sqe(struct weft__worker *w)
{
	return get_sqe(w);
}

/*
 * Arms the eventfd read, unless it is armed. Returns whether getting its
 * SQE reaped completions (a full SQ that the kernel would not take).
 *
 * wake_armed is claimed before the SQE is asked for: getting it may reap,
 * and every reap ends by arming, which must then find the read armed.
 * Set after, each refused submit armed one more read (issue 15): extra
 * reads that take eventfd writes meant for later waits, and that the one
 * cancel at shutdown leaves in flight. No eventfd completion can be
 * reaped meanwhile to clear the claim: none is armed (that is why we arm).
 */
static bool arm_wake(struct weft__worker *w)
{
	struct io_uring_sqe *sqe;
	bool reaped = false;

	if (w->ring.wake_armed || w->ring.draining)
		return false;
	w->ring.wake_armed = true;
	sqe = get_sqe_reaping(w, &reaped);
	if (!sqe) {
		w->ring.wake_armed = false; /* the ring failed for good */
		return reaped;
	}
	io_uring_prep_read(sqe, w->ring.wake_fd, &w->ring.wake_buf, sizeof(w->ring.wake_buf),
			   0);
	io_uring_sqe_set_data64(sqe, WEFT__UD_WAKE_EFD);
	return reaped;
}

/*
 * The probe behind WEFT_REACTOR_AUTO (runtime.c). A ring of one entry, a
 * NOP through io_uring_enter (a seccomp profile may allow the set-up and
 * refuse the enter), and the kernel's list of supported operations: every
 * opcode io/ops.c prepares must be there (a 5.4 kernel has a ring but no
 * accept, send or shutdown). MSG_RING is not required: wakes fall back to
 * the eventfd. A refusal is not remembered: it may be passing (-ENOMEM
 * under RLIMIT_MEMLOCK before 5.12), and it costs one failed system call.
 */
static const unsigned char probe_ops[] = {
	IORING_OP_NOP,      IORING_OP_READ,       IORING_OP_WRITE,
	IORING_OP_READV,    IORING_OP_WRITEV,     IORING_OP_RECV,
	IORING_OP_SEND,     IORING_OP_RECVMSG,    IORING_OP_SENDMSG,
	IORING_OP_ACCEPT,   IORING_OP_CONNECT,    IORING_OP_SHUTDOWN,
	IORING_OP_CLOSE,    IORING_OP_OPENAT,     IORING_OP_STATX,
	IORING_OP_FSYNC,    IORING_OP_POLL_ADD,   IORING_OP_ASYNC_CANCEL,
};

/*
 * One probe at a time, and its success published with release (acquire
 * on the fast path). Not for correctness of the answer (two probes would
 * agree) but for ThreadSanitizer: liburing maps and unmaps a ring with raw
 * system calls it does not see, so a probe ring unmapped by one thread and
 * another ring mapped at the same address by another (two runtimes
 * starting at once: sched::two_runtimes_side_by_side_spawn_into_each_other)
 * looked like a race on that memory. The lock and the release/acquire
 * pair order every use of a probe ring before any ring made after it.
 */
static int ring_probe_once(void);

int weft__ring_probe(void)
{
	static pthread_mutex_t probing = PTHREAD_MUTEX_INITIALIZER;
	static atomic_bool works;
	int err;

	if (atomic_load_explicit(&works, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&probing);
	err = atomic_load_explicit(&works, memory_order_relaxed)
		      ? 0
		      : ring_probe_once();
	if (!err)
		atomic_store_explicit(&works, true, memory_order_release);
	pthread_mutex_unlock(&probing);
	return err;
}

static int ring_probe_once(void)
{
	struct io_uring_probe *pr;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	int err;

	err = io_uring_queue_init(1, &ring, 0);
	if (err < 0)
		return err;
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_nop(sqe);
	do
		err = io_uring_submit_and_wait(&ring, 1);
	while (err == -EINTR);
	if (err >= 0 && io_uring_peek_cqe(&ring, &cqe) == 0)
		io_uring_cqe_seen(&ring, cqe);
	if (err >= 0) {
		pr = io_uring_get_probe_ring(&ring);
		if (!pr) {
			err = -ENOSYS; /* before 5.6: no probe, too old */
		} else {
			for (size_t i = 0; i < sizeof(probe_ops); i++)
				if (!io_uring_opcode_supported(pr, probe_ops[i]))
					err = -ENOSYS;
			io_uring_free_probe(pr);
		}
	}
	io_uring_queue_exit(&ring);
	return err >= 0 ? 0 : err;
}

int weft__ring_init(struct weft__worker *w)
{
	struct io_uring_params p;
	int err = -EINVAL;
	size_t i = 0;

	if (w->ring.epoll)
		return weft__epoll_init(w);
#ifndef NDEBUG
	{
		const char *e = getenv("WEFT_DEBUG_RING_FLAGS");

		if (e && e[0] >= '0' && e[0] <= '3')
			i = (size_t)(e[0] - '0');
	}
#endif
	for (; i < sizeof(ring_flag_tries) / sizeof(ring_flag_tries[0]); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = ring_flag_tries[i];
		/* A CQ four times the SQ: completions of many sockets'
		 * receives can come in one burst. Overflow beyond it is
		 * kept by the kernel (IORING_FEAT_NODROP, 5.5+) and
		 * flushed by the next io_uring_get_events(). */
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = 4 * WEFT__RING_ENTRIES;
		err = io_uring_queue_init_params(WEFT__RING_ENTRIES, &w->ring.uring,
						 &p);
		if (err == -EINVAL && (p.flags & IORING_SETUP_DEFER_TASKRUN)) {
			/* DEFER_TASKRUN without the flag word: a kernel
			 * that takes the one and not the two together (none
			 * known; every 6.1+ takes both) still gets it. */
			memset(&p, 0, sizeof(p));
			p.flags = (ring_flag_tries[i] &
				   ~IORING_SETUP_TASKRUN_FLAG) |
				  IORING_SETUP_CQSIZE;
			p.cq_entries = 4 * WEFT__RING_ENTRIES;
			err = io_uring_queue_init_params(WEFT__RING_ENTRIES,
							 &w->ring.uring, &p);
		}
		if (err == 0) {
			w->ring.flags = p.flags & ~IORING_SETUP_CQSIZE;
			break;
		}
		if (err != -EINVAL)
			break;
	}
	if (err < 0)
		return err;
#ifndef NDEBUG
	{
		const char *e = getenv("WEFT_DEBUG_MSG_RING_FAIL");

		atomic_store_explicit(&debug_msg_ring_fail, e && e[0] == '1',
				      memory_order_relaxed);
		e = getenv("WEFT_DEBUG_SQ_BUSY");
		if (e)
			atomic_store_explicit(&debug_sq_busy, atoi(e),
					      memory_order_relaxed);
	}
#endif
	/* Saves an fget/fput per enter (5.18+); optional. The slot is this
	 * thread's, and is given back on it (weft__ring_quiesce()). */
	w->ring.fd_reg = io_uring_register_ring_fd(&w->ring.uring) == 1;

	w->ring.wake_fd = eventfd(0, EFD_CLOEXEC);
	if (w->ring.wake_fd < 0) {
		err = -errno;
		w->ring.wake_fd = -1;
		io_uring_queue_exit(&w->ring.uring);
		return err;
	}
	w->ring.wake_armed = false;
	w->ring.tid = (int)syscall(SYS_gettid);
	if (w->ring.flags &
	    (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN))
		kick_install();
	arm_wake(w);
	/* The first enter: a kernel (or seccomp profile) that lets a ring
	 * be set up but refuses io_uring_enter fails here, at start-up,
	 * not later in a runtime that could never serve. */
	do
		err = io_uring_submit(&w->ring.uring);
	while (err == -EINTR);
	if (err < 0 && err != -EAGAIN && err != -EBUSY) {
		weft__ring_fini(w);
		return err;
	}
	return 0;
}

void weft__ring_fini(struct weft__worker *w)
{
	/* Requests left in flight (the drain gave up) may still write into
	 * lease buffers: those are then never freed. */
	weft__stream_fini(w);
	weft__pbuf_fini(w, weft__ring_inflight(&w->ring) != 0);
	if (w->ring.epoll) {
		weft__epoll_fini(w);
		return;
	}
	io_uring_queue_exit(&w->ring.uring);
	close(w->ring.wake_fd);
	w->ring.wake_fd = -1;
}

/*
 * Shutdown of one ring, on its worker's thread once the loop has returned
 * (SINGLE_ISSUER: no other thread may submit to it; with DEFER_TASKRUN
 * none other may reap either), before any task stack is freed.
 *
 * Closing a ring does not end its requests: the kernel tears a ring down
 * asynchronously, and not at all while another reference to its file
 * lives (a child forked meanwhile holds one until it execs). A request of
 * a dropped task (a read the kernel runs on an io-wq thread, a poll that
 * fires later) would then write into a freed or reused stack (issue 9).
 * So every request still in flight is cancelled here, and its completion
 * waited for: the records in w->ring.ops, and the armed eventfd read, whose
 * buffer lives in the worker. From now on, completions wake no task
 * (op_finish) and nothing is re-armed.
 *
 * Cancelled requests end at once, or (running on io-wq) as soon as the
 * interrupted call returns; a request that cannot be interrupted (a disk
 * read under way) ends on its own. The wait is bounded by
 * WEFT__RING_DRAIN_NS; what is still in flight then is reported, and
 * the caller keeps the stacks mapped rather than free memory the kernel
 * may still write.
 */
#define WEFT__RING_DRAIN_NS (2 * WEFT_NSEC_PER_SEC)

unsigned weft__ring_quiesce(struct weft__worker *w)
{
	uint64_t until = weft_now() + WEFT__RING_DRAIN_NS;

	if (w->ring.epoll)
		return weft__epoll_quiesce(w);
	/* Under cq_lock: a rescuer that took it before sees no draining and
	 * has finished; one after it rescues nothing. */
	weft__spin_lock(&w->ring.cq_lock);
	w->ring.draining = true;
	weft__spin_unlock(&w->ring.cq_lock);
	op_cancel_all(w);
	if (w->ring.wake_armed) {
		struct io_uring_sqe *sqe = get_sqe(w);

		if (sqe) {
			io_uring_prep_cancel64(sqe, WEFT__UD_WAKE_EFD, 0);
			io_uring_sqe_set_data64(sqe, WEFT__UD_IGNORE);
		}
	}
	while (weft__ring_inflight(&w->ring) || w->ring.wake_armed) {
		uint64_t now = weft_now();
		struct __kernel_timespec ts;
		struct io_uring_cqe *cqe;
		int r;

		if (now >= until)
			break;
		ts.tv_sec = (long long)((until - now) / WEFT_NSEC_PER_SEC);
		ts.tv_nsec = (long long)((until - now) % WEFT_NSEC_PER_SEC);
		r = io_uring_submit_and_wait_timeout(&w->ring.uring, &cqe, 1, &ts,
						     NULL);
		reap(w);
		/* -ETIME: the bound passed; -EINTR, -EAGAIN, -EBUSY: try
		 * again (reaping above made room). Anything else: the ring
		 * refuses to run; nothing more will come back. */
		if (ring_failed(w, r))
			break;
	}
	/* Give the registered ring fd's slot back here, on the thread whose
	 * slots hold it. liburing 2.3's io_uring_queue_exit() would do it on
	 * the thread that closes the ring (weft__ring_fini(), another one),
	 * where the slot number names that thread's own registration: a
	 * caller's ring of its own lost it, its next submit -EBADF (issue
	 * 15; on 6.0+ SINGLE_ISSUER rings the kernel refuses the call from
	 * another thread with -EEXIST instead). Success clears liburing's
	 * flag, so io_uring_queue_exit() leaves the slots alone. */
	if (w->ring.fd_reg && io_uring_unregister_ring_fd(&w->ring.uring) == 1)
		w->ring.fd_reg = false;
	/* Registration calls, too, must come from this thread. */
	weft__pbuf_quiesce(w);
	return weft__ring_inflight(&w->ring);
}

/*
 * Collects completions. CQEs are copied out and the CQ head advanced before
 * any is acted on: acting on one can submit (a wake-up sent to another
 * worker), and a full SQ then makes get_sqe() reap again; working on
 * copies keeps that nested call from seeing, or advancing past, entries
 * the outer one still holds. The copying, the advance and the unlinking of
 * the requests' records happen under cq_lock, which a rescuer may hold
 * (weft__ring_rescue()); the acting does not.
 */
/* A multishot completion, in the copy phase under cq_lock, in CQ order
 * (stream bytes must stay in the order the kernel posted them, and a
 * nested reap, from acting on a batch, would otherwise queue later ones
 * first): its request unlinked if it ended, its buffer queued on its
 * stream. Returns the task to wake after the lock, or NULL. Owner. */
static struct weft__tcb *multi_take(struct weft__worker *w, uint64_t ud,
				    int res, unsigned flags)
{
	if (!(flags & IORING_CQE_F_MORE))
		op_unlink(w, multi_op(ud));
	return weft__stream_cqe(weft__container_of(multi_op(ud),
						   struct weft__stream, op),
				res, flags, w->ring.draining);
}

static void reap(struct weft__worker *w)
{
	struct io_uring_cqe *cqes[32];
	struct io_uring_cqe got[32];
	struct weft__tcb *wake[32 + WEFT__RING_DEFERRED];
	unsigned n, i, nwake;

	for (;;) {
		nwake = 0;
		weft__spin_lock(&w->ring.cq_lock);
		/* What a rescuer set aside came off the CQ first. */
		for (i = 0; i < w->ring.ndeferred; i++) {
			struct weft__cqe_copy *d = &w->ring.deferred[i];

			if ((wake[nwake] = multi_take(w, d->ud, d->res,
						      d->flags)))
				nwake++;
		}
		w->ring.ndeferred = 0;
		n = io_uring_peek_batch_cqe(&w->ring.uring, cqes, 32);
		for (i = 0; i < n; i++) {
			struct weft__op *op;
			uint64_t ud;

			got[i] = *cqes[i];
			ud = got[i].user_data;
			if (weft__likely((op = ud_op(ud)) != NULL)) {
				op_unlink(w, op);
			} else if ((ud & WEFT__UD_TAG_MASK) == WEFT__UD_MULTI) {
				if ((wake[nwake] = multi_take(w, ud, got[i].res,
							      got[i].flags)))
					nwake++;
				got[i].user_data = WEFT__UD_IGNORE;
			}
		}
		io_uring_cq_advance(&w->ring.uring, n);
		weft__spin_unlock(&w->ring.cq_lock);
		/* Accept streams to stop or arm again: that takes an SQE,
		 * which may reap (a nested call, which takes over the list
		 * as it finds it), so only now. No task ran since they were
		 * listed: each is still the stream that was listed (closed
		 * ones are skipped, records are type-stable). */
		if (weft__unlikely(w->ring.settle != NULL))
			weft__stream_settle(w);
		for (i = 0; i < nwake; i++)
			weft__task_wake(wake[i]);
		if (!n)
			break;
		for (i = 0; i < n; i++) {
			uint64_t ud = got[i].user_data;

			if (weft__likely(!(ud & WEFT__UD_TAG_MASK))) {
				if (ud)
					op_finish(ud_op(ud), got[i].res,
						  got[i].flags,
						  w->ring.draining);
			} else if (ud == WEFT__UD_WAKE_EFD) {
				w->ring.wake_armed = false;
			} else if ((ud & WEFT__UD_TAG_MASK) ==
					   WEFT__UD_WAKE_MSG &&
				   ud != WEFT__UD_WAKE_MSG) {
				/* Our MSG_RING failed (e.g. -EINVAL before
				 * 5.18, or -EOVERFLOW): the wake must still
				 * arrive. */
				struct weft__worker *to =
					(struct weft__worker *)(uintptr_t)(
						ud & ~(uint64_t)WEFT__UD_TAG_MASK);
				eventfd_write(to->ring.wake_fd, 1);
			}
		}
	}
	arm_wake(w);
}

/*
 * Whether a poll must enter the kernel to collect completions. With
 * DEFER_TASKRUN the kernel posts them only when this thread asks (an
 * enter with GETEVENTS), but with TASKRUN_FLAG too it says whether there
 * is anything to ask for: it sets IORING_SQ_TASKRUN in the SQ flag word
 * when it queues work for an empty list, and clears it before it runs
 * the list (liburing's own peeks rely on the same word). The word is
 * read without a fence: work queued just as it is read is collected at
 * the next poll, or by the blocking wait, which always enters and runs
 * what is queued before it sleeps; so no completion waits for ever, and
 * a busy worker's poll (every WEFT__SERVE_NS) costs no system call when
 * nothing came. Without the flag word, every poll enters, as before
 * (half of a server's enters found nothing). An overflowed CQ is flushed
 * by the same enter. (liburing's io_uring_peek_batch_cqe(), in reap(),
 * also enters when it finds the CQ empty and the word set: what this
 * adds is asking before the CQ is empty, and in the same enter as a
 * submit.)
 */
static bool ring_needs_events(struct weft__worker *w)
{
	unsigned kflags = IO_URING_READ_ONCE(*w->ring.uring.sq.kflags);

	if (kflags & IORING_SQ_CQ_OVERFLOW)
		return true;
	if (!(w->ring.flags & IORING_SETUP_DEFER_TASKRUN))
		return false;
	return !(w->ring.flags & IORING_SETUP_TASKRUN_FLAG) ||
	       (kflags & IORING_SQ_TASKRUN);
}

void weft__ring_poll(struct weft__worker *w)
{
	bool events;

	if (w->ring.epoll) {
		weft__epoll_poll(w);
		return;
	}
	/* Queued requests and completions to collect: one enter does both.
	 * The kernel submits first, then runs the completions it holds;
	 * requests queued by this reap itself (re-armed streams) go with the
	 * next poll or the park's enter. Completions come first, in two
	 * enters, in two cases:
	 *   - a cancellation is queued: a request whose data had arrived
	 *     before the cancellation (its completion queued in the kernel,
	 *     not yet run) returns that data, as weft.h promises, rather
	 *     than being cancelled with the data left in the socket
	 *     (net::a_recv_that_completed_before_its_cancel_..., 0 of 300
	 *     completed first with the cancel submitted first);
	 *   - the CQ overflowed: get_events flushes the overflow into the
	 *     CQ, the reap makes room, and a kernel that refuses
	 *     submissions while its overflow list is not empty (-EBUSY)
	 *     then takes them.
	 * Errors: see ring_failed(); the passing ones are retried on the
	 * next poll, after this one's reap. */
	events = ring_needs_events(w);
	if (io_uring_sq_ready(&w->ring.uring) && !w->ring.cancel_queued &&
	    !io_uring_cq_has_overflow(&w->ring.uring)) {
		if (ring_failed(w, events ? io_uring_submit_and_get_events(
						    &w->ring.uring)
					  : io_uring_submit(&w->ring.uring)))
			return;
		reap(w);
		return;
	}
	if (events)
		if (ring_failed(w, io_uring_get_events(&w->ring.uring)))
			return;
	reap(w);
	if (io_uring_sq_ready(&w->ring.uring))
		ring_failed(w, io_uring_submit(&w->ring.uring));
	/* Submitted, or left for the next poll, which looks again. */
	w->ring.cancel_queued = io_uring_sq_ready(&w->ring.uring) != 0 &&
				w->ring.cancel_queued;
}

/*
 * Blocks until something arrives in the ring (or timeout_ns pass, if not
 * zero), unless there is already a reason not to. ring.in_wait (seq_cst
 * store, then seq_cst loads of remote_n and stopping) pairs with
 * remote_push()/stop, which write their flag (seq_cst) and then load
 * ring.in_wait: one side always sees the other. Notifications (idle.c)
 * need no flag: their eventfd write or MSG_RING completes the wait
 * whenever it comes, as long as it is not reaped before we block.
 *
 * So nothing may reap between the final checks and the blocking enter
 * (issue 9): a reap there could make tasks runnable here, or consume the
 * very wake-up (the eventfd read's completion, a MSG_RING) that the wait
 * is for, and the worker would then sleep over work already here. The one
 * step that can reap is arming the eventfd read (with the SQ full and the
 * kernel refusing it, getting an SQE reaps), so it comes first, and a wait
 * whose arming reaped, or could not arm (the ring failed), does not block:
 * the caller's loop looks for work again. The blocking calls themselves
 * only peek at the CQ (liburing's submit-and-wait), never consume it.
 */
void weft__ring_wait(struct weft__worker *w, uint64_t timeout_ns)
{
	bool reaped;

	if (w->ring.epoll) {
		weft__epoll_wait(w, timeout_ns);
		return;
	}
	reaped = arm_wake(w);

	atomic_store_explicit(&w->ring.in_wait, 1, memory_order_seq_cst);
	if (!reaped && w->ring.wake_armed &&
	    !atomic_load_explicit(&w->remote_n, memory_order_seq_cst) &&
	    !atomic_load_explicit(&w->rt->stopping, memory_order_seq_cst) &&
	    !atomic_load_explicit(&w->notified, memory_order_seq_cst)) {
		if (weft__unlikely(RUNNING_ON_VALGRIND)) {
			/* Valgrind (3.19) runs one thread at a time and keeps
			 * its lock across io_uring_enter, so a worker blocked
			 * there would stop the very thread that is to wake
			 * it. Wait in short slices instead, letting the
			 * others run between them. */
			struct __kernel_timespec ts = { .tv_nsec = 1000000 };
			struct io_uring_cqe *cqe;
			uint64_t left = timeout_ns ? timeout_ns / 1000000 + 1
						   : UINT64_MAX;
			int r;

			while (left-- &&
			       (r = io_uring_submit_and_wait_timeout(
					&w->ring.uring, &cqe, 1, &ts, NULL)) ==
				       -ETIME &&
			       !atomic_load_explicit(&w->remote_n,
						     memory_order_seq_cst) &&
			       !atomic_load_explicit(&w->rt->stopping,
						     memory_order_seq_cst) &&
			       !atomic_load_explicit(&w->notified,
						     memory_order_seq_cst))
				sched_yield(); /* hands valgrind's lock on */
			ring_failed(w, r);
		} else if (timeout_ns) {
			struct __kernel_timespec ts = {
				.tv_sec = (long long)(timeout_ns / 1000000000u),
				.tv_nsec = (long long)(timeout_ns % 1000000000u)
			};
			struct io_uring_cqe *cqe;
			/* -ETIME on timeout: nothing to do but return. */
			ring_failed(w, io_uring_submit_and_wait_timeout(
					       &w->ring.uring, &cqe, 1, &ts, NULL));
		} else {
			/* -EINTR, -EAGAIN, -EBUSY: the worker loop reaps
			 * (ring_poll below) and comes back. */
			ring_failed(w, io_uring_submit_and_wait(&w->ring.uring, 1));
		}
	}
	atomic_store_explicit(&w->ring.in_wait, 0, memory_order_relaxed);
	weft__ring_poll(w);
}

/*
 * Whether the MSG_RING to `to` just submitted failed inline: its failure
 * CQE is among those posted to from's CQ since `tail` (read before the
 * submit). If so, the CQE is marked done (user_data WEFT__UD_IGNORE: we
 * own the CQ memory until we advance its head, and the kernel never reads
 * a CQE back), so that reap() does not wake the target a second time.
 */
static bool msg_failed_inline(struct weft__worker *from,
			      struct weft__worker *to, unsigned tail)
{
	struct io_uring_cq *cq = &from->ring.uring.cq;
	/* Acquire: pairs with the kernel's release of the CQ tail, so the
	 * CQEs up to it are visible. */
	unsigned end = io_uring_smp_load_acquire(cq->ktail);
	uint64_t ud = (uint64_t)(uintptr_t)to | WEFT__UD_WAKE_MSG;

	for (; tail != end; tail++) {
		struct io_uring_cqe *cqe = &cq->cqes[tail & cq->ring_mask];

		if (cqe->user_data == ud) {
			cqe->user_data = WEFT__UD_IGNORE;
			return true;
		}
	}
	return false;
}

/*
 * Wakes `to` (parked in its ring, or about to be). From a worker in
 * MSG_RING mode: a MSG_RING from our ring into its (no completion on our
 * side when it succeeds: IOSQE_CQE_SKIP_SUCCESS). Otherwise, or when the
 * MSG_RING failed, the eventfd, which any thread may write.
 *
 * "Failed", and when we learn it: a failure must be caught here, at once,
 * not at our next reap, which a sender busy in a long task may not do for
 * a long time while the target sleeps (issue 9).
 *   - The submit failed (an io_uring_enter error), or left SQEs in the SQ
 *     (the kernel took fewer than were queued; ours was queued last): the
 *     target has not been told. Eventfd now. (A MSG_RING still in the SQ
 *     goes with our next submit: one spurious wake-up.)
 *   - The kernel refused the message: -EINVAL before 5.18, -EBADFD for a
 *     ring being torn down, -EOVERFLOW or -ENOMEM where it could not post.
 *     For targets like ours (not IOPOLL) MSG_RING runs inline during the
 *     submit, so the failure CQE is in our CQ when the submit returns.
 *     Eventfd now (msg_failed_inline()).
 *   - A failure CQE the kernel could not post because our own CQ was full
 *     waits on the overflow list until our next reap, which falls back
 *     then (reap(): user_data worker | 2). So does a MSG_RING the kernel
 *     punted to io-wq, which it does for IOPOLL targets only.
 */
void weft__ring_wake(struct weft__worker *from, struct weft__worker *to)
{
	int r;

	if (from && from != to && to->rt->wake_mode == WEFT_WAKE_MSG_RING &&
	    !to->ring.epoll) {
		struct io_uring_sqe *sqe = get_sqe(from);
		unsigned tail;

		if (!sqe)
			goto efd;
		io_uring_prep_msg_ring(sqe,
				       DEBUG_MSG_RING_FAIL() ? -1
							     : to->ring.uring.ring_fd,
				       0, WEFT__UD_WAKE_MSG, 0);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)to |
						     WEFT__UD_WAKE_MSG);
		tail = io_uring_smp_load_acquire(from->ring.uring.cq.ktail);
		r = io_uring_submit(&from->ring.uring);
		if (r < 0) {
			ring_failed(from, r);
			goto efd;
		}
		if (!io_uring_sq_ready(&from->ring.uring) &&
		    !msg_failed_inline(from, to, tail))
			return;
	}
efd:
	/* Write errors cannot happen short of a counter overflow at 2^64-1,
	 * which would itself mean the target is awake. */
	if (eventfd_write(to->ring.wake_fd, 1) < 0)
		return;
}

/* ---- requests ------------------------------------------------------------
 * A task's I/O call (io/ops.c) prepares an SQE and starts its record here;
 * its task is pinned to this worker while the request is in flight (the
 * argument is in io/ops.c). Records are linked in ring.ops for the
 * cancellation at shutdown.
 */
void weft__ring_op_start(struct weft__worker *w, struct weft__op *op,
			 struct weft__tcb *task, unsigned task_flags,
			 struct io_uring_sqe *sqe)
{
	op->task = task;
	op->task_flags = task_flags;
	op->multi = false;
	atomic_init(&op->done, 0);
	io_uring_sqe_set_data(sqe, op);
	weft__spin_lock(&w->ring.cq_lock);
	atomic_store_explicit(&w->ring.inflight,
			      weft__ring_inflight(&w->ring) + 1,
			      memory_order_relaxed);
	op->prev = NULL;
	op->next = w->ring.ops;
	if (w->ring.ops)
		w->ring.ops->prev = op;
	w->ring.ops = op;
	weft__spin_unlock(&w->ring.cq_lock);
}

void weft__ring_multi_start(struct weft__worker *w, struct weft__op *op,
			    struct io_uring_sqe *sqe)
{
	weft__ring_op_start(w, op, NULL, 0, sqe);
	op->multi = true;
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | WEFT__UD_MULTI);
	weft__worker_serve_soon(w);
}

void weft__ring_multi_cancel(struct weft__worker *w, struct weft__op *op)
{
	struct io_uring_sqe *sqe = weft__ring_sqe(w);

	if (!sqe)
		return; /* the ring failed for good: shutdown drops it */
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op | WEFT__UD_MULTI, 0);
	io_uring_sqe_set_data64(sqe, WEFT__UD_IGNORE);
	w->ring.cancel_queued = true;
	weft__worker_serve_soon(w);
}

void weft__ring_op_pin(struct weft__worker *w, struct weft__tcb *self,
		       unsigned flags)
{
	/* Ordered before the wakers' reads by the park's prepare (acq_rel). */
	atomic_store_explicit(&self->flags, flags | WEFT__T_PINNED,
			      memory_order_relaxed);
	if (!(flags & WEFT__T_PINNED))
		weft__task_set_home(self, w);
	/* Looked for from the worker's next pick on (submitted there, or
	 * when it parks). Submitting here at once when the worker had other
	 * tasks cost the http benchmark a fifth of its throughput (one
	 * io_uring_enter per request instead of per batch): not done. */
	weft__worker_serve_soon(w);
}

void weft__ring_op_cancel(struct weft__worker *w, struct weft__op *op)
{
	struct io_uring_sqe *sqe = weft__ring_sqe(w);

	/* NULL: the ring failed for good and the runtime is stopping; the
	 * task is dropped with its request. */
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
	io_uring_sqe_set_data64(sqe, WEFT__UD_IGNORE);
	w->ring.cancel_queued = true;
}

int weft__ring_watch(struct weft__worker *w, struct weft__op *op, int fd,
		     unsigned events, unsigned task_flags)
{
	struct io_uring_sqe *sqe;

	if (w->ring.epoll)
		return weft__epoll_watch(w, op, fd, events, task_flags);
	if (!(sqe = weft__ring_sqe(w)))
		return atomic_load_explicit(&w->rt->fatal,
					    memory_order_relaxed);
	io_uring_prep_poll_add(sqe, fd, events);
	weft__ring_op_start(w, op, w->current, task_flags, sqe);
	return 0;
}

bool weft__ring_unwatch(struct weft__worker *w, struct weft__op *op)
{
	if (w->ring.epoll)
		return weft__epoll_unwatch(w, op);
	/* Acquire: pairs with op_finish()'s release of done. */
	if (atomic_load_explicit(&op->done, memory_order_acquire))
		return true;
	weft__ring_op_cancel(w, op);
	return false;
}

/* The request's record leaves w's list. Under w's cq_lock. */
static void op_unlink(struct weft__worker *w, struct weft__op *op)
{
	/* Once per request: a second unlink would corrupt the list (a
	 * rescuer that unlinked a multishot's last completion it set aside,
	 * which the owner then unlinked again, did; the count wrapped). */
	weft__assert(weft__ring_inflight(&w->ring) > 0);
	atomic_store_explicit(&w->ring.inflight,
			      weft__ring_inflight(&w->ring) - 1,
			      memory_order_relaxed);
	if (op->next)
		op->next->prev = op->prev;
	if (op->prev)
		op->prev->next = op->next;
	else
		w->ring.ops = op->next;
}

/* A request completed with res (its record unlinked): the result goes to
 * the task, which is woken unless its ring is draining. On the ring's
 * worker, or a rescuer (which saw it not draining, under cq_lock). */
void weft__ring_op_done(struct weft__op *op, int res)
{
	op_finish(op, res, 0, false);
}

static void op_finish(struct weft__op *op, int res, unsigned cflags,
		      bool draining)
{
	struct weft__tcb *t = op->task;
	unsigned tf = op->task_flags;

	op->res = res;
	op->cflags = cflags;
	/* Shutdown (weft__ring_quiesce): the task will never run again
	 * and is dropped with its stack once every request is back; the
	 * workers are stopping, so it is not woken. */
	if (weft__unlikely(draining))
		return;
	/* Last touch of the record. The task cannot return before this
	 * store: it waits for `done` (it may run meanwhile, on its worker,
	 * where it is pinned, and park again). */
	atomic_store_explicit(&op->done, 1, memory_order_release);
	/* Unpin before the wake: the task no longer needs this ring, so its
	 * wake-up may put it where any worker can steal it. Another waker
	 * (a cancel) may read the flags at any moment: if it reads them
	 * pinned, the task goes back to its ring's worker; if unpinned,
	 * its acquire load (weft__task_flags) orders it after this release
	 * store and so after `done`, which the task will see wherever it
	 * runs. `home` is left alone: a task pinned by its spawner has home
	 * == this worker anyway.
	 * A CAS from the pin this request put (weft__ring_op_pin), not a
	 * store: once `done` is out the task may have returned (woken by a
	 * cancel, say) and changed its flags itself (weft_stream_open pins
	 * it), or ended; a late store of the old flags would undo that. If
	 * the flags are no longer the request's, the task put its own back
	 * already. */
	{
		unsigned pinned = tf | WEFT__T_PINNED;

		atomic_compare_exchange_strong_explicit(
			&t->flags, &pinned, tf, memory_order_release,
			memory_order_relaxed);
	}
	weft__task_wake(t);
}

/* Shutdown: every request still in flight on w's ring is cancelled (by
 * its own user_data, which every kernel with io_uring understands;
 * IORING_ASYNC_CANCEL_ANY would need 5.19). */
static void op_cancel_all(struct weft__worker *w)
{
	struct weft__op *op;

	/* weft__ring_sqe() may reap (SQ full), unlinking records as we go.
	 * An unlinked record keeps its own `next`, and nothing is linked
	 * any more, so following `next` still reaches every record in
	 * flight (and perhaps some that completed: their cancels find
	 * nothing, -ENOENT, ignored). */
	for (op = w->ring.ops; op; op = op->next) {
		struct io_uring_sqe *sqe = weft__ring_sqe(w);

		if (!sqe)
			return; /* the ring failed: nothing can be cancelled */
		io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op |
					    (op->multi ? WEFT__UD_MULTI : 0),
				       0);
		io_uring_sqe_set_data64(sqe, WEFT__UD_IGNORE);
	}
}

/*
 * Rescue of a stuck worker's completions (issue 17)
 * --------------------------------------------------
 * A request's task is pinned to the worker whose ring holds it, and only
 * that worker reaps: if it then runs one task for long (a 500 ms
 * computation), a read whose data is there waited the whole time while
 * other workers idled. Another worker h that saw v switch no task for
 * WEFT__RESCUE_NS with requests in flight (worker.c, steal_next(); the
 * watcher looks even when every other worker sleeps) rescues them: it
 * reaps what v's CQ holds (2); if that is nothing, it kicks v (1), and a
 * look WEFT__RESCUE_KICK_LOOK_NS later reaps what the kick brought. A kick
 * that brings nothing (the requests wait for data) doubles the wait
 * before the next, up to WEFT__RESCUE_MAX_NS (worker.c, rescue_done()).
 *
 * 1. Kick. With DEFER_TASKRUN (or COOP_TASKRUN) the kernel posts v's
 *    completions only when v's thread enters it, and SINGLE_ISSUER lets no
 *    other thread do that for v. So h sends v's thread WEFT__KICK_SIG
 *    (SIGURG, which Go's runtime uses for the same purpose: ignored by
 *    default, rarely used otherwise), whose handler calls io_uring_enter
 *    with GETEVENTS and nothing to submit: the kernel runs v's pending
 *    task work, which posts the CQEs. The handler reads the worker
 *    pointer (TLS) and the ring fd, nothing else of weft's, and keeps
 *    errno: it may interrupt any code, weft's included. Only a thread the
 *    kernel reports running (state R in /proc) is kicked; one blocked in
 *    a system call (a task calling sleep(3): a mistake, but the program's
 *    own) is left alone, so that weft never makes such a call return
 *    EINTR. The handler is installed (SA_RESTART) only if the program has
 *    none for SIGURG, and a kick is sent only while it is still the one
 *    installed; otherwise the completions of a stuck worker wait for it,
 *    as before. Rings with neither flag get their CQEs posted by the
 *    kernel's own task-work interrupt: no kick.
 * 2. Reap. Under v's cq_lock (trylock: h never waits for v), h consumes
 *    v's CQ from its head while the entries are request completions (or
 *    ignored ones), unlinks their records, and then, outside the lock,
 *    acts on them as v would (op_finish: result, done, unpin, wake). A
 *    wake-up entry (eventfd read, MSG_RING) stops it: those are v's own
 *    state (wake_armed), and they only come while v waits in its ring,
 *    when it reaps itself. The head is read and advanced directly, not
 *    through liburing, which may enter the kernel for the ring.
 * Orderings: the kernel stores the CQ tail with release, read here with
 * acquire; the head is stored with release, as liburing's advance does,
 * so the kernel reuses a slot only after its copy was made. cq_lock's
 * acquire and release order h's and v's turns at the CQ and at the
 * records list (op_start links under it too). A woken task is no longer
 * pinned (op_finish puts its own flags back): it runs on h. A task the
 * program pinned to v still goes back to v.
 * Cost to v: an uncontended lock per reap batch and per request started.
 */
#define WEFT__KICK_SIG SIGURG

static pthread_mutex_t kick_lock = PTHREAD_MUTEX_INITIALIZER;

static void kick_handler(int sig)
{
	int e = errno;
	struct weft__worker *w = weft__worker_self();

	(void)sig;
	if (w && w->ring.wake_fd >= 0)
		(void)syscall(__NR_io_uring_enter, w->ring.uring.ring_fd, 0, 0,
			      IORING_ENTER_GETEVENTS, NULL, 0);
	errno = e;
}

static bool kick_installed(void)
{
	struct sigaction cur;

	return sigaction(WEFT__KICK_SIG, NULL, &cur) == 0 &&
	       !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == kick_handler;
}

/* Once per process (or again after the library's destructor took it
 * out): only over the default or ignored disposition. */
static void kick_install(void)
{
	struct sigaction cur, sa;

	pthread_mutex_lock(&kick_lock);
	if (sigaction(WEFT__KICK_SIG, NULL, &cur) == 0 &&
	    !(cur.sa_flags & SA_SIGINFO) &&
	    (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN)) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = kick_handler;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(WEFT__KICK_SIG, &sa, NULL);
	}
	pthread_mutex_unlock(&kick_lock);
}

/* dlclose() or exit: a later SIGURG must not run unmapped code. */
__attribute__((destructor)) static void kick_uninstall(void)
{
	pthread_mutex_lock(&kick_lock);
	if (kick_installed())
		signal(WEFT__KICK_SIG, SIG_DFL);
	pthread_mutex_unlock(&kick_lock);
}

/* The kernel's state letter for thread tid of this process ('R': running
 * or runnable), or 0 if it cannot be read. */
static char thread_state(int tid)
{
	char buf[512], *p;

	if (weft__base_thread_file(tid, "stat", buf, sizeof(buf)) < 0)
		return 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Sends v's thread the kick; false if it was not sent. tgkill, not
 * pthread_kill: a thread that has just left (shutdown) answers ESRCH
 * instead of being undefined behaviour. */
static bool kick(struct weft__worker *v)
{
	if (thread_state(v->ring.tid) != 'R' || !kick_installed())
		return false;
	return syscall(SYS_tgkill, (int)getpid(), v->ring.tid,
		       WEFT__KICK_SIG) == 0;
}

/* Consumes v's completions from the CQ head (see above); returns how
 * many requests it finished. */
static unsigned rescue_reap(struct weft__worker *v)
{
	struct io_uring_cq *cq = &v->ring.uring.cq;
	struct weft__op *ops[32];
	int res[32];
	unsigned cflags[32];
	unsigned head, tail, n = 0, i;

	if (!weft__spin_trylock(&v->ring.cq_lock))
		return 0;
	if (v->ring.draining) {
		weft__spin_unlock(&v->ring.cq_lock);
		return 0;
	}
	head = IO_URING_READ_ONCE(*cq->khead);
	tail = io_uring_smp_load_acquire(cq->ktail);
	while (head != tail && n < 32) {
		struct io_uring_cqe *cqe = &cq->cqes[head & cq->ring_mask];
		uint64_t ud = cqe->user_data;

		if ((ud & WEFT__UD_TAG_MASK) == WEFT__UD_MULTI) {
			/* A stream's: only the owner may act on it (stream.h).
			 * Set aside, in order, for its next reap, which also
			 * takes the request out of the list if it ended
			 * (multi_take()): once, there. */
			struct weft__cqe_copy *d;

			if (v->ring.ndeferred == WEFT__RING_DEFERRED)
				break;
			d = &v->ring.deferred[v->ring.ndeferred++];
			d->ud = ud;
			d->res = cqe->res;
			d->flags = cqe->flags;
		} else if (ud & WEFT__UD_TAG_MASK) {
			if (ud != WEFT__UD_IGNORE)
				break;
		} else if (ud) {
			ops[n] = ud_op(ud);
			res[n] = cqe->res;
			cflags[n] = cqe->flags;
			op_unlink(v, ops[n]);
			n++;
		}
		head++;
	}
	io_uring_smp_store_release(cq->khead, head);
	weft__spin_unlock(&v->ring.cq_lock);
	for (i = 0; i < n; i++)
		op_finish(ops[i], res[i], cflags[i], false);
	/* Set-aside ones wait for the owner's next look at its ring (its
	 * armed streams keep `inflight` non-zero, so a busy owner looks at
	 * its periodic pick; the tasks they wake are pinned to it anyway). */
	return n;
}

unsigned weft__ring_rescue(struct weft__worker *v, bool *kicked)
{
	unsigned n, woken = 0;

	if (v->ring.epoll)
		return weft__epoll_rescue(v);

	while ((n = rescue_reap(v)) != 0) {
		woken += n;
		if (n < 32)
			break;
	}
	/* Nothing posted: the kick's handler posts what the kernel holds,
	 * for the next look (the handler runs when v's thread is next
	 * scheduled; waiting for it here would spin this worker). */
	if (!woken && kicked &&
	    (v->ring.flags &
	     (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN)))
		*kicked = kick(v);
	return woken;
}
