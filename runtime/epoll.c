/*
 * The epoll reactor (issue 11): what a worker parks in, is woken through
 * and learns readiness from when the runtime does not run on io_uring
 * (runtime.c chooses; ring.c hands each call over when ring.epoll is set).
 * Docker's, Podman's and containerd's default seccomp profiles refuse
 * io_uring, as do gVisor and kernel.io_uring_disabled; Photon, Seastar and
 * libuv fall back to epoll the same way.
 *
 * Each worker has its own epoll instance and an eventfd in it (level-
 * triggered, data WEFT__EP_WAKE): any thread wakes the worker by writing
 * the eventfd (weft__ring_wake() does, as for io_uring's eventfd mode), and
 * the worker drains it when it sees it. A wake written before the worker
 * blocks keeps the eventfd readable, so it is not lost. Timed waits use
 * epoll_pwait2() (5.11+, nanoseconds) when the kernel has it, else
 * epoll_wait() with the timeout rounded up to a millisecond.
 *
 * I/O (io/ops.c): a task's call first tries the non-blocking system call
 * (MSG_DONTWAIT, RWF_NOWAIT, a non-blocking listener); on -EAGAIN it waits
 * here, weft__epoll_wait_fd(), for the descriptor's readiness and tries
 * again. Calls that have no readiness (regular files, opens, stats, fsync)
 * run on the blocking pool.
 *
 * Registration. The waiting task is pinned to its worker, as an io_uring
 * request pins it to its ring, and its record (struct weft__op, on its
 * stack) joins that worker's list of waiters for the descriptor (ring.fdw,
 * indexed by descriptor number). The descriptor is (re-)armed in the
 * worker's epoll with EPOLLONESHOT for the union of its waiters' events at
 * every wait: EPOLL_CTL_MOD, or ADD when the kernel does not know it (a
 * first wait, or the descriptor was closed and its number reused: the
 * kernel drops a closed file from every epoll set, so MOD answers -ENOENT
 * and weft keeps no stale state that could make it skip an arming). MOD
 * looks at the descriptor's state as it arms, so readiness that arrived
 * between the failed call and the arming is reported, not lost: the
 * try-arm-wait sequence needs no other ordering. A one-shot registration
 * fires once; the waiters it answers leave the list and are woken; what
 * still waits (the other direction) is armed again. Events may be
 * spurious (a waiter that went away, a reused number): callers retry
 * their call and wait again on -EAGAIN.
 *
 * Cancellation and deadlines end the wait at once: the record leaves the
 * list, nothing was consumed, and the call returns -ECANCELED or
 * -ETIMEDOUT without having done its system call (or having done only
 * what it reports, a partial send).
 *
 * Who touches what: ring.fdw, the lists, `inflight` and the arming are
 * changed under ring.cq_lock, by the owner (its tasks' waits, the events
 * it collects) or by a rescuer that took it with a trylock
 * (weft__epoll_rescue(), for a worker stuck in one task: any thread may
 * collect events from any epoll instance). A record's `done` is stored
 * (release) last by whoever completes it (weft__ring_op_done(), ring.c),
 * and read (acquire) by its task, as for io_uring.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "epoll.h"
#include "mem.h"
#include "ring.h"
#include "runtime.h"
#include "spin.h"
#include "task.h"
#include "wait.h"
#include "worker.h"

/* One descriptor's waiters on one worker. */
struct weft__fdw {
	struct weft__op *ops; /* waiting records, linked by next/prev */
	bool added;           /* in the epoll set, as far as we know */
	/* The owner's guess, for its own calls only (no lock): the last
	 * read of this descriptor here came up short, so the next would
	 * find nothing (weft__epoll_dry()); and whether it is a stream
	 * (0 unknown, 1 yes, -1 no: a datagram's short read says nothing). */
	bool dry;
	signed char stream;
};

/* The wake eventfd's and the timerfd's epoll data; descriptors carry
 * their number. */
#define WEFT__EP_WAKE UINT64_MAX
#define WEFT__EP_TIMER (UINT64_MAX - 1)
#define WEFT__EP_BATCH 64

/* epoll_pwait2: 0 not tried yet, 1 works, -1 refused (before 5.11, or a
 * seccomp profile without it; valgrind 3.19 does not know it). Relaxed:
 * racing first tries find the same answer (ep_pwait2_works()). */
static atomic_int pwait2_state;

/* The timed waits' timerfd, in w's set (or -1 if it cannot be had: the
 * wait then rounds up to milliseconds). */
static int ep_timerfd(struct weft__worker *w)
{
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u64 = WEFT__EP_TIMER };
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);

	if (fd >= 0 && epoll_ctl(w->ring.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Whether epoll_pwait2 works here, asked once per process (valgrind,
 * a kernel before 5.11 or a seccomp profile may refuse it): a timed wait
 * without it needs the timerfd, made at set-up, not later, when it would
 * take a descriptor number the program just freed. */
static bool ep_pwait2_works(int epfd)
{
#ifdef SYS_epoll_pwait2
	int st = atomic_load_explicit(&pwait2_state, memory_order_relaxed);

	if (st == 0) {
		struct timespec ts = { 0, 0 };
		struct epoll_event ev;

		st = syscall(SYS_epoll_pwait2, epfd, &ev, 1, &ts, NULL, 0) >= 0 ||
				     (errno != ENOSYS && errno != EPERM)
			     ? 1
			     : -1;
		atomic_store_explicit(&pwait2_state, st, memory_order_relaxed);
	}
	return st > 0;
#else
	(void)epfd;
	return false;
#endif
}

int weft__epoll_init(struct weft__worker *w)
{
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u64 = WEFT__EP_WAKE };
	struct rlimit lim;
	unsigned n = 65536;
	int err;

	w->ring.tfd = -1;
	w->ring.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->ring.epfd < 0)
		return -errno;
	w->ring.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->ring.wake_fd < 0) {
		err = -errno;
		goto fail;
	}
	if (epoll_ctl(w->ring.epfd, EPOLL_CTL_ADD, w->ring.wake_fd, &ev) < 0) {
		err = -errno;
		close(w->ring.wake_fd);
		goto fail;
	}
	w->ring.tid = (int)syscall(SYS_gettid);
	/* Sized for the descriptors the process may open (at most 64 Ki
	 * entries; pages are committed as they are touched), so that a wait
	 * does not allocate: it grows only past that. */
	if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
		n = lim.rlim_cur < 65536 ? (unsigned)lim.rlim_cur : 65536;
	w->ring.fdw = weft__mem_calloc(n, sizeof(*w->ring.fdw));
	if (!w->ring.fdw) {
		err = -ENOMEM;
		close(w->ring.wake_fd);
		goto fail;
	}
	w->ring.nfdw = n;
	if (!ep_pwait2_works(w->ring.epfd))
		w->ring.tfd = ep_timerfd(w);
	return 0;
fail:
	close(w->ring.epfd);
	w->ring.epfd = -1;
	w->ring.wake_fd = -1;
	return err;
}

void weft__epoll_fini(struct weft__worker *w)
{
	if (w->ring.tfd >= 0)
		close(w->ring.tfd);
	w->ring.tfd = -1;
	close(w->ring.epfd);
	close(w->ring.wake_fd);
	w->ring.epfd = -1;
	w->ring.wake_fd = -1;
	weft__mem_free(w->ring.fdw);
	w->ring.fdw = NULL;
	w->ring.nfdw = 0;
}

/* Shutdown, on w's thread after its loop: the kernel holds nothing of a
 * task's (readiness writes into no buffer), so the waiters of tasks that
 * are about to be dropped are simply forgotten. */
unsigned weft__epoll_quiesce(struct weft__worker *w)
{
	weft__spin_lock(&w->ring.cq_lock);
	w->ring.draining = true;
	for (unsigned i = 0; i < w->ring.nfdw; i++)
		w->ring.fdw[i].ops = NULL;
	atomic_store_explicit(&w->ring.inflight, 0, memory_order_relaxed);
	weft__spin_unlock(&w->ring.cq_lock);
	return 0;
}

/* Arms fd once in w's epoll for `want` (see the head comment). Under
 * cq_lock. Returns 0 or the refusal: -EPERM for a descriptor epoll cannot
 * watch (a regular file, a directory), -EBADF, -ENOMEM, -ENOSPC. */
static int ep_arm(struct weft__worker *w, int fd, struct weft__fdw *f,
		  unsigned want)
{
	struct epoll_event ev = { .events = want | EPOLLONESHOT,
				  .data.u64 = (uint32_t)fd };
	int r, e;

	r = epoll_ctl(w->ring.epfd, f->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
		      fd, &ev);
	if (r < 0 && ((e = errno) == ENOENT || e == EEXIST))
		r = epoll_ctl(w->ring.epfd,
			      e == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd,
			      &ev);
	if (r < 0) {
		e = errno;
		f->added = false;
		return -e;
	}
	f->added = true;
	return 0;
}

static unsigned ep_want(const struct weft__fdw *f)
{
	unsigned want = 0;

	for (const struct weft__op *op = f->ops; op; op = op->next)
		want |= op->events;
	return want;
}

static void ep_unlink(struct weft__worker *w, struct weft__fdw *f,
		      struct weft__op *op)
{
	if (op->next)
		op->next->prev = op->prev;
	if (op->prev)
		op->prev->next = op->next;
	else
		f->ops = op->next;
	atomic_store_explicit(&w->ring.inflight,
			      weft__ring_inflight(&w->ring) - 1,
			      memory_order_relaxed);
}

/* The entry for fd, the table grown to hold it. Under cq_lock. */
static struct weft__fdw *ep_entry(struct weft__worker *w, int fd)
{
	if ((unsigned)fd >= w->ring.nfdw) {
		unsigned n = w->ring.nfdw ? w->ring.nfdw : 64;
		struct weft__fdw *t;

		while (n <= (unsigned)fd)
			n *= 2;
		t = weft__mem_calloc(n, sizeof(*t));
		if (!t)
			return NULL;
		if (w->ring.nfdw)
			memcpy(t, w->ring.fdw, w->ring.nfdw * sizeof(*t));
		weft__mem_free(w->ring.fdw);
		w->ring.fdw = t;
		w->ring.nfdw = n;
	}
	return &w->ring.fdw[fd];
}

/*
 * Takes the waiters that the n events answer out of their lists, each with
 * its events in res, and returns them chained through next; arms again
 * what still waits on those descriptors. Under cq_lock. The wake eventfd
 * is drained by the owner (a rescuer leaves it: it is the owner's).
 */
static struct weft__op *ep_take(struct weft__worker *w,
				const struct epoll_event *ev, int n,
				bool owner)
{
	struct weft__op *done = NULL;

	for (int i = 0; i < n; i++) {
		struct weft__fdw *f;
		struct weft__op *op, *next;
		unsigned got = ev[i].events;
		int fd;

		if (ev[i].data.u64 >= WEFT__EP_TIMER) {
			uint64_t v;

			if (owner)
				(void)!read(ev[i].data.u64 == WEFT__EP_WAKE
						    ? w->ring.wake_fd
						    : w->ring.tfd,
					    &v, sizeof(v));
			continue;
		}
		fd = (int)ev[i].data.u64;
		if ((unsigned)fd >= w->ring.nfdw)
			continue;
		f = &w->ring.fdw[fd];
		for (op = f->ops; op; op = next) {
			next = op->next;
			if (!(got & (op->events | EPOLLERR | EPOLLHUP)))
				continue;
			ep_unlink(w, f, op);
			op->res = (int)got;
			op->next = done;
			done = op;
		}
		/* The one-shot arming is spent: what still waits (the other
		 * direction) needs a new one. A refusal now (the descriptor
		 * was closed under its waiters) wakes them all: their call
		 * reports it. */
		if (f->ops && ep_arm(w, fd, f, ep_want(f)) < 0) {
			for (op = f->ops; op; op = next) {
				next = op->next;
				ep_unlink(w, f, op);
				op->res = EPOLLERR;
				op->next = done;
				done = op;
			}
		}
	}
	return done;
}

/* Outside cq_lock: each record's task gets its events and is woken. */
static unsigned ep_finish(struct weft__op *done)
{
	unsigned k = 0;

	while (done) {
		struct weft__op *next = done->next;

		weft__ring_op_done(done, done->res);
		done = next;
		k++;
	}
	return k;
}

/* Collects n events on w's own thread. */
static void ep_collect(struct weft__worker *w, const struct epoll_event *ev,
		       int n)
{
	struct weft__op *done;

	if (n <= 0)
		return;
	weft__spin_lock(&w->ring.cq_lock);
	done = w->ring.draining ? NULL : ep_take(w, ev, n, true);
	weft__spin_unlock(&w->ring.cq_lock);
	ep_finish(done);
}

/*
 * One epoll_wait: without blocking (block false), until something comes
 * (timeout_ns 0), or for timeout_ns. Returns the count of events, or a
 * negative errno (-EINTR when a signal came).
 */
static int ep_wait(struct weft__worker *w, struct epoll_event *ev,
		   bool block, uint64_t timeout_ns)
{
	int r, ms;

	if (block && timeout_ns) {
#ifdef SYS_epoll_pwait2
		if (w->ring.tfd < 0 &&
		    atomic_load_explicit(&pwait2_state,
					 memory_order_relaxed) > 0) {
			struct timespec ts = {
				.tv_sec = (time_t)(timeout_ns /
						   WEFT_NSEC_PER_SEC),
				.tv_nsec = (long)(timeout_ns %
						  WEFT_NSEC_PER_SEC)
			};

			r = (int)syscall(SYS_epoll_pwait2, w->ring.epfd, ev,
					 WEFT__EP_BATCH, &ts, NULL, 0);
			return r < 0 ? -errno : r;
		}
#endif
		/* No epoll_pwait2: the timerfd in the set (weft__epoll_init),
		 * armed for the timeout, keeps the wait as precise
		 * (epoll_wait's own timeout is whole milliseconds). Left
		 * armed when something else ends the wait: its expiry is
		 * drained as spurious. */
		if (w->ring.tfd >= 0) {
			struct itimerspec its = { .it_value = {
				.tv_sec = (time_t)(timeout_ns /
						   WEFT_NSEC_PER_SEC),
				.tv_nsec = (long)(timeout_ns %
						  WEFT_NSEC_PER_SEC) } };

			if (timerfd_settime(w->ring.tfd, 0, &its, NULL) == 0) {
				r = epoll_wait(w->ring.epfd, ev, WEFT__EP_BATCH,
					       -1);
				return r < 0 ? -errno : r;
			}
		}
		ms = timeout_ns >= (uint64_t)INT32_MAX * 1000000u
			     ? INT32_MAX
			     : (int)((timeout_ns + 999999u) / 1000000u);
	} else {
		ms = block ? -1 : 0;
	}
	r = epoll_wait(w->ring.epfd, ev, WEFT__EP_BATCH, ms);
	return r < 0 ? -errno : r;
}

/* epoll_wait failed with r: -EINTR passes (the caller's loop comes
 * back); anything else (-EBADF, -EINVAL, a seccomp refusal) means this
 * worker can never wait again, and ends the runtime as a failed ring
 * does. */
static void ep_failed(struct weft__worker *w, int r)
{
	if (r < 0 && r != -EINTR)
		weft__ring_failed(w, r);
}

void weft__epoll_poll(struct weft__worker *w)
{
	struct epoll_event ev[WEFT__EP_BATCH];
	int n;

	do {
		n = ep_wait(w, ev, false, 0);
		ep_failed(w, n);
		ep_collect(w, ev, n);
	} while (n == WEFT__EP_BATCH);
}

/*
 * Blocks until something arrives, as weft__ring_wait() does, with the
 * same flags and the same argument (ring.c): in_wait (seq_cst store, then
 * seq_cst loads of remote_n, stopping and notified) pairs with the wakers,
 * which write their flag (seq_cst) and then load in_wait or write the
 * eventfd. Nothing is collected between the final checks and the
 * blocking epoll_wait, and a wake written meanwhile keeps the eventfd
 * readable, so the wait returns at once.
 */
void weft__epoll_wait(struct weft__worker *w, uint64_t timeout_ns)
{
	struct epoll_event ev[WEFT__EP_BATCH];
	bool block;
	int n;

	atomic_store_explicit(&w->ring.in_wait, 1, memory_order_seq_cst);
	block = !atomic_load_explicit(&w->remote_n, memory_order_seq_cst) &&
		!atomic_load_explicit(&w->rt->stopping, memory_order_seq_cst) &&
		!atomic_load_explicit(&w->notified, memory_order_seq_cst);
	n = ep_wait(w, ev, block, timeout_ns);
	atomic_store_explicit(&w->ring.in_wait, 0, memory_order_relaxed);
	ep_failed(w, n);
	ep_collect(w, ev, n);
	if (n == WEFT__EP_BATCH)
		weft__epoll_poll(w);
}

/*
 * A stuck worker's readiness, from another worker (ring.h,
 * weft__ring_rescue): it collects v's events itself (epoll_wait on
 * another thread's instance is allowed) under v's cq_lock, taken with a
 * trylock, and wakes their tasks, unpinned, here. Returns how many.
 */
unsigned weft__epoll_rescue(struct weft__worker *v)
{
	struct epoll_event ev[WEFT__EP_BATCH];
	struct weft__op *done = NULL;
	int n;

	if (!weft__spin_trylock(&v->ring.cq_lock))
		return 0;
	if (!v->ring.draining) {
		n = ep_wait(v, ev, false, 0);
		if (n > 0)
			done = ep_take(v, ev, n, false);
	}
	weft__spin_unlock(&v->ring.cq_lock);
	return ep_finish(done);
}

/*
 * Closing under a waiter. epoll forgets a descriptor when its file is
 * closed, so a task waiting on it would wait for ever (io_uring's request
 * holds the file instead, and completes). weft's own closes (weft_close(),
 * weft_proc_close_stdin()) therefore wake, once the number is closed or
 * replaced, every task of every epoll runtime that waits on that number:
 * its call tries again and meets what is there now (-EBADF, or the
 * replacement). The runtimes are listed here, from start to release.
 */
static pthread_mutex_t ep_rts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct weft_runtime *ep_rts;

void weft__epoll_runtime_add(struct weft_runtime *rt)
{
	pthread_mutex_lock(&ep_rts_lock);
	rt->ep_next = ep_rts;
	ep_rts = rt;
	pthread_mutex_unlock(&ep_rts_lock);
}

void weft__epoll_runtime_remove(struct weft_runtime *rt)
{
	pthread_mutex_lock(&ep_rts_lock);
	for (struct weft_runtime **p = &ep_rts; *p; p = &(*p)->ep_next)
		if (*p == rt) {
			*p = rt->ep_next;
			break;
		}
	pthread_mutex_unlock(&ep_rts_lock);
}

void weft__epoll_closed(int fd)
{
	struct weft__worker *self = weft__worker_self();
	struct weft__op *done = NULL;

	if (fd < 0)
		return;
	pthread_mutex_lock(&ep_rts_lock);
	for (struct weft_runtime *rt = ep_rts; rt; rt = rt->ep_next)
		for (unsigned i = 0; i < rt->nworkers; i++) {
			struct weft__worker *w = rt->workers[i];
			struct weft__fdw *f;

			weft__spin_lock(&w->ring.cq_lock);
			if (!w->ring.draining && (unsigned)fd < w->ring.nfdw) {
				f = &w->ring.fdw[fd];
				f->added = false;
				/* The guesses are their owner's: only the
				 * calling worker's are reset here. Another
				 * worker's stay until its next read of the
				 * number corrects them; a wrong one costs a
				 * wait that returns at once, never a lost
				 * wake-up (weft__epoll_dry()). */
				if (w == self) {
					f->dry = false;
					f->stream = 0;
				}
				while (f->ops) {
					struct weft__op *op = f->ops;

					ep_unlink(w, f, op);
					op->res = EPOLLERR | EPOLLHUP;
					op->next = done;
					done = op;
				}
			}
			weft__spin_unlock(&w->ring.cq_lock);
		}
	pthread_mutex_unlock(&ep_rts_lock);
	ep_finish(done);
}

/* ---- a task's wait ------------------------------------------------------ */

/*
 * A wait for room to write ends after WEFT__EP_RECHECK_NS at most, and the
 * call tries again. Some state changes reach a blocked writer but no poll
 * bit: a Unix stream socket whose peer shut its reading side down (the
 * writer's next send fails with -EPIPE) reports neither EPOLLOUT nor
 * EPOLLHUP while its buffer stays full. A blocking send(2), and io_uring,
 * which tries the call again at every wake-up of the socket, see it; epoll
 * does not, so the writer looks for itself now and then.
 */
#define WEFT__EP_RECHECK_NS (100 * WEFT_NSEC_PER_MSEC)

struct ep_waiting {
	struct weft__wait wt;
	struct weft__worker *w; /* whose lists hold the record */
	struct weft__op *op;
};

/* Acquire: pairs with the completion's release of done (ring.c). */
static bool ep_ready(struct weft__wait *wt)
{
	return atomic_load_explicit(&((struct ep_waiting *)wt)->op->done,
				    memory_order_acquire);
}

/*
 * Cancelled or timed out: the record leaves its list and the wait ends,
 * unless a collector took it first. Who took it is told by the list, not
 * by `done`: a collector takes records out under cq_lock (ep_take) and
 * completes them after it (ep_finish), so a record can be out of the list
 * and not yet done; a wait that ended then would leave the collector
 * writing into a stack that is gone (tests/model/epoll_wait.pml,
 * INJ_GIVE_UP_BY_DONE, found it in the first version). Taken: the wake-up
 * is on its way; the wait goes on for it, and the result is the event's.
 * The arming stays either way: its event, if it comes, finds no waiter
 * (or the next one) and is spurious.
 */
static bool ep_give_up(struct weft__wait *wt, int why)
{
	struct ep_waiting *u = (struct ep_waiting *)wt;

	if (!weft__epoll_unwatch(u->w, u->op))
		return false;
	wt->res = why;
	return true;
}

bool weft__epoll_unwatch(struct weft__worker *w, struct weft__op *op)
{
	struct weft__fdw *f;
	bool found = false;

	weft__spin_lock(&w->ring.cq_lock);
	f = &w->ring.fdw[op->fd];
	for (struct weft__op *o = f->ops; o; o = o->next)
		if (o == op) {
			ep_unlink(w, f, op);
			found = true;
			break;
		}
	weft__spin_unlock(&w->ring.cq_lock);
	return found;
}

int weft__epoll_watch(struct weft__worker *w, struct weft__op *op, int fd,
		      unsigned events, unsigned task_flags)
{
	struct weft__fdw *f;
	int err;

	if (fd < 0)
		return -EBADF;
	op->task = w->current;
	op->task_flags = task_flags;
	op->fd = fd;
	op->events = events;
	atomic_init(&op->done, 0);
	weft__spin_lock(&w->ring.cq_lock);
	f = ep_entry(w, fd);
	if (!f) {
		weft__spin_unlock(&w->ring.cq_lock);
		return -ENOMEM;
	}
	err = ep_arm(w, fd, f, ep_want(f) | events);
	if (err < 0) {
		weft__spin_unlock(&w->ring.cq_lock);
		return err;
	}
	op->prev = NULL;
	op->next = f->ops;
	if (f->ops)
		f->ops->prev = op;
	f->ops = op;
	atomic_store_explicit(&w->ring.inflight,
			      weft__ring_inflight(&w->ring) + 1,
			      memory_order_relaxed);
	weft__spin_unlock(&w->ring.cq_lock);
	return 0;
}

/*
 * The read-side guess (epoll.h). Skipping a read that the guess says
 * would fail is safe: the wait arms with EPOLL_CTL_MOD, which reports data
 * already there at once. A wrong guess costs a round through the worker's
 * poll instead of a failed call.
 */
bool weft__epoll_dry(int fd)
{
	struct weft__worker *w = weft__worker_self();

	return w && (unsigned)fd < w->ring.nfdw && w->ring.fdw[fd].dry;
}

void weft__epoll_got(int fd, size_t got, size_t asked)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__fdw *f;

	if (!w || (unsigned)fd >= w->ring.nfdw)
		return;
	f = &w->ring.fdw[fd];
	if (!f->stream) {
		int type = 0;
		socklen_t len = sizeof(type);

		/* A socket tells its type; anything else read as a stream
		 * (a pipe, a terminal) is one. */
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
			f->stream = 1;
		else
			f->stream = type == SOCK_STREAM ? 1 : -1;
	}
	f->dry = f->stream > 0 && got < asked;
}

bool weft__epoll_on(void)
{
	struct weft__worker *w = weft__worker_self();

	return w && w->ring.epoll;
}

int weft__epoll_wait_fd(int fd, unsigned events)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tcb *self;
	struct weft__op op;
	struct ep_waiting u;
	unsigned flags;
	uint64_t until;
	int err;

	if (!w || !w->current)
		return -EPERM;
	if (fd < 0)
		return -EBADF;
	self = w->current;
	if (weft__task_cancel_pending(self))
		return -ECANCELED;
	if (self->deadline != WEFT_NEVER && self->deadline <= weft_now())
		return -ETIMEDOUT;
	flags = weft__task_flags(self);
	err = weft__epoll_watch(w, &op, fd, events, flags);
	if (err < 0)
		return err;
	/* Pinned while the record is in w's lists; the event's completion
	 * puts the flags back. */
	weft__ring_op_pin(w, self, flags);
	u.w = w;
	u.op = &op;
	until = self->deadline;
	if ((events & EPOLLOUT) && until - weft_now() > WEFT__EP_RECHECK_NS)
		until = weft_now() + WEFT__EP_RECHECK_NS;
	weft__wait_init(&u.wt, w, until);
	weft__wait_for(&u.wt, WEFT__W_IO_EPOLL, NULL,
			 (int64_t)((uint64_t)events << 32 | (uint32_t)fd));
	err = weft__wait(&u.wt, ep_ready, ep_give_up);
	atomic_store_explicit(&self->flags, flags, memory_order_relaxed);
	/* The re-check's own deadline, not the task's: try again. */
	if (err == -ETIMEDOUT && until != self->deadline)
		return 0;
	if (err)
		return err;
	return op.res;
}
