/*
 * The reactor: each worker's io_uring (runtime/ring.c). It is how a worker
 * parks (blocks in its ring until something arrives), how other threads
 * wake it, and where I/O requests complete. The scheduler (worker.c,
 * idle.c, timer.c, runtime.c) uses the first half; io/ uses the second:
 * it prepares an SQE, hands its record (struct weft__op) to
 * weft__ring_op_start(), parks its task and, once `done`, reads `res`.
 * Calls go from io/ to here, never back: a completion reaches its task
 * through the park/wake protocol (wait.h), not through io/.
 *
 * The second reactor, epoll (runtime/epoll.c, issue 11), sits behind the
 * same parking and waking calls: each of them below turns to it when
 * ring.epoll is set (the runtime chose it at start, runtime.c), and it
 * completes the same records, which then stand for a readiness wait
 * (weft__epoll_wait_fd(), epoll.h) instead of an SQE.
 */
#ifndef WEFT_RING_H
#define WEFT_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "spin.h"

#include <liburing.h>

struct weft__tcb;
struct weft__worker;

/* One request in flight: on the issuing task's stack. The reactor stores
 * res, then done (release), then wakes task; the task leaves only after
 * seeing done (acquire), so the record outlives the kernel's use of it. */
struct weft__op {
	struct weft__tcb *task;
	int res;
	unsigned cflags;     /* the CQE's flags (io_uring; 0 on epoll) */
	unsigned task_flags; /* the task's own flags, put back on completion */
	atomic_int done;
	/* The worker's list of requests in flight (ring.ops), touched only
	 * by that worker: linked at submission, unlinked at completion. On
	 * the epoll reactor: the list of its descriptor's waiters. */
	struct weft__op *next, *prev;
	bool multi; /* a multishot request (weft__ring_multi_start()) */
	/* epoll reactor only: the descriptor and the events waited for. */
	int fd;
	unsigned events;
};

struct weft__fdw;

#define WEFT__RING_DEFERRED 32u

/* A worker's reactor state, embedded in struct weft__worker (on a line of
 * its own). Only the owning worker touches it, except wake_fd (written to
 * by wakers), in_wait (read by remote_push(), worker.c), and what a
 * rescuer takes cq_lock for (weft__ring_rescue()). */
struct weft__ring {
	struct io_uring uring;
	unsigned flags;      /* the setup flags the kernel accepted */
	bool fd_reg;         /* ring fd registered in this thread's slots */
	int wake_fd;         /* eventfd woken by other threads; -1: no ring */
	uint64_t wake_buf;   /* target of the armed eventfd read */
	bool wake_armed;
	/* A cancellation is queued in the SQ (owner only): the next poll
	 * collects completions before it submits (ring.c, weft__ring_poll). */
	bool cancel_queued;
	atomic_int in_wait;  /* 1 while blocked in the ring */
	int tid;             /* the owning thread's kernel id (kicks) */
	/* Consuming the CQ, and the records of requests in flight: the
	 * owner always, another worker rescuing a stuck owner's completions
	 * (trylock only: it never waits for the owner). */
	weft__spin cq_lock;
	/* Requests submitted whose completion has not been reaped; the busy
	 * loop polls the ring only when it is non-zero. Written under
	 * cq_lock; read without it as a hint (relaxed). */
	atomic_uint inflight;
	/* Those requests' records, for the cancellation at shutdown (under
	 * cq_lock); and set (under cq_lock) once that shutdown began:
	 * completions then wake no task, the wake-up read is not re-armed,
	 * and nobody rescues. */
	struct weft__op *ops;
	bool draining;
	/* The epoll reactor (epoll.c) instead of the io_uring: set before
	 * init, never changed; `uring` is then unused. Its own state, all
	 * the owning worker's (cq_lock covers the waiters for a rescuer):
	 * the epoll instance, and per descriptor number its waiters. */
	bool epoll;
	int epfd;
	int tfd; /* timerfd for timed waits without epoll_pwait2, or -1 */
	struct weft__fdw *fdw;
	unsigned nfdw;
	/* Lease buffers (pbuf.c), made at the first weft_recv_lease() on
	 * this worker; the owner's pointer. */
	struct weft__pbuf *pbuf;
	/* Receive streams (stream.c): open ones, and records kept for
	 * reuse; the owner's. */
	struct weft__stream *streams, *streams_free;
	/* Accept streams whose arming is to change after this reap (stopped
	 * or armed again), once cq_lock is dropped (stream.h); the owner's
	 * alone (a rescuer sets multishot completions aside, it never
	 * lists). */
	struct weft__stream *settle;
	/* How many are open, counting those on their way here (placed,
	 * weft__stream_place()): any worker, atomically; a hint. */
	atomic_uint nstreams;
	/* Multishot completions a rescuer took off the CQ (it cannot act on
	 * them: streams are the owner's), in CQ order, for the owner's next
	 * reap; under cq_lock. */
	struct weft__cqe_copy {
		uint64_t ud;
		int res;
		unsigned flags;
	} deferred[WEFT__RING_DEFERRED];
	unsigned ndeferred;
};

#define WEFT__RING_ENTRIES 512u

/* ---- parking and waking (the scheduler's half) ---------------------- */

int weft__ring_init(struct weft__worker *w);
void weft__ring_fini(struct weft__worker *w);
/* Shutdown, on w's own thread after its loop returned: cancels every
 * request in flight on its ring and waits (bounded) for their completions,
 * waking no task. Returns how many are still in flight: while non-zero,
 * the kernel may still write into task stacks. */
unsigned weft__ring_quiesce(struct weft__worker *w);
/* Blocks until something arrives (or timeout_ns, if not 0), unless there
 * is already a reason not to (argued in ring.c). */
void weft__ring_wait(struct weft__worker *w, uint64_t timeout_ns);
/* Reaps completions and submits what is queued, without blocking. */
void weft__ring_poll(struct weft__worker *w);
/* Wakes `to` from any thread (from: the calling worker, or NULL). */
void weft__ring_wake(struct weft__worker *from, struct weft__worker *to);

static inline bool weft__ring_ready(const struct weft__ring *r)
{
	return r->wake_fd >= 0;
}

/* Work for weft__ring_poll(): completions to come or SQEs to submit. */
static inline bool weft__ring_busy(struct weft__ring *r)
{
	return atomic_load_explicit(&r->inflight, memory_order_relaxed) ||
	       (!r->epoll && io_uring_sq_ready(&r->uring));
}

/* Whether r's CQ holds entries not yet consumed: any thread (a rescuer's
 * look, worker.c). Both indices read atomically: the kernel stores the
 * tail, the owner or a rescuer the head (liburing's io_uring_cq_ready()
 * reads the head plainly, fine for the owner only). Acquire on the tail:
 * pairs with the kernel's release. */
static inline bool weft__ring_cq_posted(struct weft__ring *r)
{
	if (r->epoll)
		return false; /* epoll: nothing is posted; a rescue asks */
	return io_uring_smp_load_acquire(r->uring.cq.ktail) !=
	       IO_URING_READ_ONCE(*r->uring.cq.khead);
}

/* Requests in flight on r (a relaxed hint, for any thread). */
static inline unsigned weft__ring_inflight(struct weft__ring *r)
{
	return atomic_load_explicit(&r->inflight, memory_order_relaxed);
}

/*
 * Completions of a worker stuck in one long task (issue 17), from another
 * worker (the caller) that saw v switch no task for a while with requests in flight:
 * what v's CQ holds is reaped here and the tasks woken (onto the caller). With
 * DEFER_TASKRUN (or COOP_TASKRUN) the kernel posts v's completions only
 * when v enters it; so if nothing was posted and `kicked` is not NULL, v
 * is kicked: a signal whose handler, on v's thread, asks the kernel for
 * them, to be reaped at a later look (ring.c argues it); *kicked says
 * whether it was sent. Returns how many tasks were woken. The caller's
 * scheduler context only.
 */
unsigned weft__ring_rescue(struct weft__worker *v, bool *kicked);

/* Whether io_uring works here for what weft asks of it: a ring can be set
 * up and entered, and every operation weft submits is supported. 0, or
 * the error that rules it out (-EPERM, -ENOSYS, -EINVAL...). Any thread;
 * a success is remembered for the process. */
int weft__ring_probe(void);

/* Whether r, an error of the reactor's system calls, means it can never
 * work again; if so the runtime records it and stops (ring.c,
 * ring_failed()). The worker's own thread. */
bool weft__ring_failed(struct weft__worker *w, int r);

/* A request ended with res (its record out of every list): the result goes
 * to its task, which is woken. Either reactor, on the record's worker or a
 * rescuer. */
void weft__ring_op_done(struct weft__op *op, int res);

/* ---- requests (io/'s half) ------------------------------------------ */

/* A free SQE of w's ring (submits and retries while the SQ is full), or
 * NULL if the ring failed for good (rt->fatal holds why). */
struct io_uring_sqe *weft__ring_sqe(struct weft__worker *w);
/* Puts op (task's, whose flags it will put back to task_flags) in flight
 * as the request prepared in sqe. */
void weft__ring_op_start(struct weft__worker *w, struct weft__op *op,
			 struct weft__tcb *task, unsigned task_flags,
			 struct io_uring_sqe *sqe);
/* The calling task (self, whose own flags are `flags`) has a request in
 * w's reactor: it is pinned to w until the request completes (io/ops.c
 * argues why; the completion puts `flags` back), and w looks at its
 * reactor from its next pick on. Either reactor. */
void weft__ring_op_pin(struct weft__worker *w, struct weft__tcb *self,
		       unsigned flags);
/* Asks the kernel to cancel op (in flight on w's ring, w's thread); its
 * completion still comes. */
void weft__ring_op_cancel(struct weft__worker *w, struct weft__op *op);
/*
 * Readiness watches (weft_select's descriptor cases). watch: op, a record
 * on the calling task's stack, waits in w's reactor until fd is ready for
 * `events` (poll(2) bits): an IORING_OP_POLL_ADD, or the descriptor's
 * waiter list in the epoll set. Its completion stores the events that came
 * (or -errno) in res, then done (release), and wakes the task. The caller
 * pinned itself to w (weft__ring_op_pin) before, and passes the flags it
 * is pinned with as task_flags, so that a completion leaves the pin in
 * place (every watch must be ended from w, the ring's one issuer). 0 or
 * -errno (nothing started). unwatch: ends a watch; true once it is over
 * (it was done, or left the list before anyone took it), false if its
 * completion is still to come: wait for done before the record goes.
 * w's thread, the watching task.
 */
int weft__ring_watch(struct weft__worker *w, struct weft__op *op, int fd,
		     unsigned events, unsigned task_flags);
bool weft__ring_unwatch(struct weft__worker *w, struct weft__op *op);
/* A multishot request (a receive or accept stream's, stream.h): op is linked in
 * flight until its last completion (no IORING_CQE_F_MORE); every
 * completion goes to weft__stream_cqe(). multi_cancel asks the kernel to
 * end it. w's thread. */
void weft__ring_multi_start(struct weft__worker *w, struct weft__op *op,
			    struct io_uring_sqe *sqe);
void weft__ring_multi_cancel(struct weft__worker *w, struct weft__op *op);

#endif
