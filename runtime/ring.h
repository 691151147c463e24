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
 * A second reactor (epoll, issue 11) would sit behind the same parking
 * and waking calls and complete the same records; the SQE is the io_uring
 * backend's way of describing a request.
 */
#ifndef WEFT_RING_H
#define WEFT_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>

struct weft__tcb;
struct weft__worker;

/* One request in flight: on the issuing task's stack. The reactor stores
 * res, then done (release), then wakes task; the task leaves only after
 * seeing done (acquire), so the record outlives the kernel's use of it. */
struct weft__op {
	struct weft__tcb *task;
	int res;
	unsigned task_flags; /* the task's own flags, put back on completion */
	atomic_int done;
	/* The worker's list of requests in flight (ring.ops), touched only
	 * by that worker: linked at submission, unlinked at completion. */
	struct weft__op *next, *prev;
};

/* A worker's reactor state, embedded in struct weft__worker (on a line of
 * its own). Only the owning worker touches it, except wake_fd (written to
 * by wakers) and in_wait (read by remote_push(), worker.c). */
struct weft__ring {
	struct io_uring uring;
	unsigned flags;      /* the setup flags the kernel accepted */
	bool fd_reg;         /* ring fd registered in this thread's slots */
	int wake_fd;         /* eventfd woken by other threads; -1: no ring */
	uint64_t wake_buf;   /* target of the armed eventfd read */
	bool wake_armed;
	atomic_int in_wait;  /* 1 while blocked in the ring */
	/* Requests submitted whose completion has not been reaped; the busy
	 * loop polls the ring only when it is non-zero. */
	unsigned inflight;
	/* Those requests' records, for the cancellation at shutdown; and
	 * set once that shutdown began: completions then wake no task and
	 * the wake-up read is not re-armed. */
	struct weft__op *ops;
	bool draining;
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
	return r->inflight || io_uring_sq_ready(&r->uring);
}

/* ---- requests (io/'s half) ------------------------------------------ */

/* A free SQE of w's ring (submits and retries while the SQ is full), or
 * NULL if the ring failed for good (rt->fatal holds why). */
struct io_uring_sqe *weft__ring_sqe(struct weft__worker *w);
/* Puts op (task's, whose flags it will put back to task_flags) in flight
 * as the request prepared in sqe. */
void weft__ring_op_start(struct weft__worker *w, struct weft__op *op,
			 struct weft__tcb *task, unsigned task_flags,
			 struct io_uring_sqe *sqe);
/* Asks the kernel to cancel op (in flight on w's ring, w's thread); its
 * completion still comes. */
void weft__ring_op_cancel(struct weft__worker *w, struct weft__op *op);

#endif
