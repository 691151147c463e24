/*
 * Always-on runtime metrics (metrics.c): each worker's counters, the
 * helpers that bump them, and weft_metrics() which sums them.
 *
 * Who writes what. Every counter of struct weft__wmetrics is written only
 * by its worker's own thread (weft__worker_self() == the worker), with a
 * relaxed load and a relaxed store: no read-modify-write, no fence, no
 * line shared with another writer, so a bump costs what a plain increment
 * does. Readers (weft_metrics(), any thread) load each counter relaxed and
 * sum: a sum is not a snapshot (counters read a moment apart), but each
 * counter only grows, and a relaxed load of a value stored by one thread
 * sees that thread's stores in order. One exception: a task's end is
 * stored with release and read first, with acquire (weft_metrics(),
 * metrics.c), so that no read finds more tasks finished than spawned.
 * What happens where no worker runs
 * (a spawn from a foreign thread, timers fired there) goes to the
 * runtime's shared counters (struct weft__rmetrics) with an atomic add:
 * off every worker's hot path.
 *
 * WEFT_METRICS=OFF at configure time (WEFT__NO_METRICS) compiles every
 * bump out; weft_metrics() then answers -ENOTSUP.
 */
#ifndef WEFT_METRICS_H
#define WEFT_METRICS_H

#include "base.h"

struct weft__worker;

#define WEFT__IO_BUCKETS WEFT_METRICS_IO_BUCKETS

/* One worker's counters; on lines of their own in struct weft__worker. */
struct weft__wmetrics {
	atomic_ulong spawned;     /* tasks spawned on this worker */
	atomic_ulong finished;    /* tasks that ended here */
	atomic_ulong steals;      /* successful steals by this worker */
	atomic_ulong stolen;      /* tasks those steals moved */
	atomic_ulong parks;       /* times it slept in its reactor */
	atomic_ulong wakes;       /* of those, ended by a notify */
	atomic_ulong timers_armed;
	atomic_ulong timers_fired;
	atomic_ulong io_sub[WEFT_IO_KINDS];
	atomic_ulong io_done[WEFT_IO_KINDS];
	atomic_ulong io_hist[WEFT__IO_BUCKETS];
	atomic_ulong io_ns;       /* sum of the latencies in io_hist */
	/* Busy time, in one word so that a reader never sees half of a
	 * park's accounting (metrics.c, busy_ns(), argues it): bit 0 set,
	 * parked, and the rest the busy time up to the park's start; bit 0
	 * clear, awake, and the rest the instant (ns) from which `now - it`
	 * is the busy time (the start plus every park). 0: not started.
	 * Owner's stores, release. */
	_Atomic uint64_t busy;
	/* The owner's own view: the instant above, and the current park's
	 * start. Owner only, plain. */
	uint64_t busy_base;
	uint64_t park_t0;
	/* The most any reader has reported for this worker (atomic max,
	 * readers only: never the owner's line). */
	_Alignas(WEFT__CACHELINE) _Atomic uint64_t busy_seen;
};

/* What no worker counted: bumps made off the workers (atomic adds). */
struct weft__rmetrics {
	atomic_ulong spawned;
	atomic_ulong timers_fired;
	atomic_ulong stalls; /* stall reports (stall.c) */
};

#ifndef WEFT__NO_METRICS
/* The owner's bump: a relaxed load and store (see the file comment). */
static inline void weft__metrics_bump(atomic_ulong *c, unsigned long n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) +
					 n,
			      memory_order_relaxed);
}
#define WEFT__METRIC(w, field, n) weft__metrics_bump(&(w)->m.field, (n))
/* A task's end: the same bump with a release store, so that a reader
 * that sees it (acquire, weft_metrics()) sees the task's spawn counted
 * too, on whichever worker (or off the workers) it was made. */
static inline void weft__metrics_finished(struct weft__wmetrics *m)
{
	atomic_store_explicit(&m->finished,
			      atomic_load_explicit(&m->finished,
						   memory_order_relaxed) +
				      1,
			      memory_order_release);
}
#define WEFT__METRIC_FINISHED(w) weft__metrics_finished(&(w)->m)
#else
#define WEFT__METRIC(w, field, n) ((void)(w), (void)(n))
#define WEFT__METRIC_FINISHED(w) ((void)(w))
#endif

#ifndef WEFT__NO_METRICS
/* Bumps on the calling thread's worker of rt if it is one, else on rt's
 * shared counter (timers fired off the workers). Timers are armed only on
 * a worker, which bumps its own counter (timer.c). */
void weft__metrics_timers_fired(struct weft_runtime *rt, unsigned n);
/* A spawn made off rt's workers. */
void weft__metrics_spawn_foreign(struct weft_runtime *rt);
/* A worker's clock starts (before its loop runs). */
void weft__metrics_worker_init(struct weft__worker *w);
/* Parks: before and after the reactor wait (idle.c); notified: the wait
 * was ended by a notify. Owner only. */
void weft__metrics_park_begin(struct weft__worker *w);
void weft__metrics_park_end(struct weft__worker *w, bool notified);
/*
 * I/O calls (io/ops.c): begin on the worker that starts the call, end on
 * the one where it returns (the task may have moved), with the latency
 * from begin to end (the call's whole time, waiting to run again
 * included). kind: enum weft_io_kind. begin returns the start time (0:
 * not on a worker, nothing counted).
 */
uint64_t weft__metrics_io_begin(unsigned kind);
void weft__metrics_io_end(unsigned kind, uint64_t t0);
#else
/* Compiled out: nothing is left of the calls. */
#define weft__metrics_timers_fired(rt, n) ((void)(rt), (void)(n))
#define weft__metrics_spawn_foreign(rt) ((void)(rt))
#define weft__metrics_worker_init(w) ((void)(w))
#define weft__metrics_park_begin(w) ((void)(w))
#define weft__metrics_park_end(w, notified) ((void)(w), (void)(notified))
#define weft__metrics_io_begin(kind) ((void)(kind), (uint64_t)0)
#define weft__metrics_io_end(kind, t0) ((void)(kind), (void)(t0))
#endif

#endif /* WEFT_METRICS_H */
