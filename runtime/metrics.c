/*
 * Runtime metrics: the bumps that need more than one line (parks, I/O
 * calls, counts made off the workers) and weft_metrics(), which sums every
 * worker's counters. The protocol (each counter written by its worker
 * alone, read relaxed by anyone) is argued in metrics.h.
 */
#include <string.h>

#include "idle.h"
#include "inject.h"
#include "lq.h"
#include "metrics.h"
#include "pool.h"
#include "runtime.h"
#include "worker.h"

#ifndef WEFT__NO_METRICS

static struct weft__worker *self_of(struct weft_runtime *rt)
{
	struct weft__worker *w = weft__worker_self();

	return w && w->rt == rt ? w : NULL;
}

void weft__metrics_timers_fired(struct weft_runtime *rt, unsigned n)
{
	struct weft__worker *w = self_of(rt);

	if (w)
		WEFT__METRIC(w, timers_fired, n);
	else
		atomic_fetch_add_explicit(&rt->metrics.timers_fired, n,
					  memory_order_relaxed);
}

void weft__metrics_spawn_foreign(struct weft_runtime *rt)
{
	atomic_fetch_add_explicit(&rt->metrics.spawned, 1,
				  memory_order_relaxed);
}

void weft__metrics_worker_init(struct weft__worker *w)
{
	w->m.busy_base = weft_now();
	atomic_store_explicit(&w->m.busy, w->m.busy_base << 1,
			      memory_order_release);
}

/* Two clock reads per park, which is a system call anyway; none per
 * switch. Each end of a park is one store of the busy word (metrics.h):
 * its start freezes the busy time at `t0 - base`, its end moves the base
 * on by the park's length. */
void weft__metrics_park_begin(struct weft__worker *w)
{
	uint64_t t0 = weft_now();

	WEFT__METRIC(w, parks, 1);
	w->m.park_t0 = t0;
	atomic_store_explicit(&w->m.busy,
			      ((t0 - w->m.busy_base) << 1) | 1,
			      memory_order_release);
}

void weft__metrics_park_end(struct weft__worker *w, bool notified)
{
	if (notified)
		WEFT__METRIC(w, wakes, 1);
	w->m.busy_base += weft_now() - w->m.park_t0;
	atomic_store_explicit(&w->m.busy, w->m.busy_base << 1,
			      memory_order_release);
}

static unsigned io_bucket(uint64_t ns)
{
	unsigned b;

	if (ns < 1024)
		return 0;
	b = (unsigned)(63 - __builtin_clzll(ns)) - 9;
	return b < WEFT__IO_BUCKETS ? b : WEFT__IO_BUCKETS - 1;
}

uint64_t weft__metrics_io_begin(unsigned kind)
{
	struct weft__worker *w = weft__worker_self();

	if (!w)
		return 0;
	WEFT__METRIC(w, io_sub[kind], 1);
	return weft_now();
}

void weft__metrics_io_end(unsigned kind, uint64_t t0)
{
	struct weft__worker *w = weft__worker_self();
	uint64_t ns;

	if (!w || !t0)
		return;
	ns = weft_now() - t0;
	WEFT__METRIC(w, io_done[kind], 1);
	WEFT__METRIC(w, io_hist[io_bucket(ns)], 1);
	WEFT__METRIC(w, io_ns, ns);
}

/*
 * A worker's busy time. One load of the owner's busy word (acquire), then
 * the clock: parked, the word holds the busy time itself; awake, the busy
 * time is now - base, and the clock read after the load is at least the
 * owner's clock read before its store (the acquire orders them), so a
 * park's end is never counted as busy. (Two words, a park's start and an
 * idle sum, let a reader between the owner's two stores count a whole
 * park as busy and take it back at its next read.)
 *
 * What is left: a reader that loads the awake word just before the owner
 * stores the start of a park, and reads the clock after the owner read
 * its own (the owner between its clock read and its store), reports up
 * to that gap more than the park will freeze. So every reader publishes
 * what it reports with an atomic max on busy_seen, and reports at least
 * that: busy time never goes back, and is ahead of the truth by at most
 * such a gap, never by a park.
 */
static uint64_t busy_ns(struct weft__worker *w)
{
	uint64_t v = atomic_load_explicit(&w->m.busy, memory_order_acquire);
	uint64_t now = weft_now(), b, seen;

	if (!v)
		return 0; /* not started */
	if (v & 1)
		b = v >> 1;
	else
		b = now > (v >> 1) ? now - (v >> 1) : 0;
	seen = atomic_load_explicit(&w->m.busy_seen, memory_order_relaxed);
	while (seen < b &&
	       !atomic_compare_exchange_weak_explicit(&w->m.busy_seen, &seen,
						      b, memory_order_relaxed,
						      memory_order_relaxed))
		;
	return seen > b ? seen : b;
}

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* Adds worker w's counters to *m; its finished count too if `finished`
 * (else the caller has read it first: see fill()). */
static void add_worker(struct weft_metrics *m, struct weft__worker *w,
		       bool finished)
{
	unsigned i;

	m->tasks_spawned += LD(w->m.spawned);
	if (finished)
		m->tasks_finished += LD(w->m.finished);
	m->switches += LD(w->ticks);
	m->steals += LD(w->m.steals);
	m->steal_tasks += LD(w->m.stolen);
	m->parks += LD(w->m.parks);
	m->wakes += LD(w->m.wakes);
	m->timers_armed += LD(w->m.timers_armed);
	m->timers_fired += LD(w->m.timers_fired);
	for (i = 0; i < WEFT_IO_KINDS; i++) {
		m->io_submitted[i] += LD(w->m.io_sub[i]);
		m->io_completed[i] += LD(w->m.io_done[i]);
	}
	for (i = 0; i < WEFT__IO_BUCKETS; i++)
		m->io_latency[i] += LD(w->m.io_hist[i]);
	m->io_latency_sum_ns += LD(w->m.io_ns);
	m->busy_ns += busy_ns(w);
	m->local_depth += weft__lq_len(&w->lq);
}

/* The caller's record is filled in a whole local one, then copied as far
 * as the caller's size goes. */
static int fill(weft_runtime *rt, struct weft_metrics *m, bool all,
		unsigned index)
{
	struct weft_metrics r;
	uint64_t now = weft_now();
	size_t n;
	unsigned i;

	if (!m || m->size < offsetof(struct weft_metrics, uptime_ns) +
				    sizeof(m->uptime_ns))
		return -EINVAL;
	if (!rt)
		rt = weft_runtime_self();
	if (!rt)
		rt = weft__pool_owner(); /* a thread of its blocking pool */
	if (!rt)
		return -EPERM;
	if (!all && index >= rt->nworkers)
		return -EINVAL;
	memset(&r, 0, sizeof(r));
	r.workers = rt->nworkers;
	r.uptime_ns = now - rt->metrics_start;
	if (all) {
		/* Every finished count first (acquire: pairs with the
		 * release of weft__metrics_finished()), then the spawn
		 * counts: a task whose end is counted was spawned before,
		 * so its spawn is counted too, wherever it was made, and
		 * tasks_spawned - tasks_finished (the tasks alive) never
		 * goes below 0. Summed worker by worker, a task spawned
		 * on a worker already summed and ended on one summed later
		 * was counted as finished and not spawned. */
		for (i = 0; i < rt->nworkers; i++)
			r.tasks_finished += atomic_load_explicit(
				&rt->workers[i]->m.finished,
				memory_order_acquire);
		for (i = 0; i < rt->nworkers; i++)
			add_worker(&r, rt->workers[i], false);
		r.tasks_spawned += LD(rt->metrics.spawned);
		r.timers_fired += LD(rt->metrics.timers_fired);
		r.stalls = LD(rt->metrics.stalls);
		r.inject_depth = LD(rt->inject_len);
		pthread_mutex_lock(&rt->pool.lock);
		r.blocking_threads = rt->pool.threads;
		r.blocking_idle = rt->pool.idle;
		r.blocking_queued = rt->pool.queued;
		pthread_mutex_unlock(&rt->pool.lock);
	} else {
		add_worker(&r, rt->workers[index], true);
	}
	n = m->size < sizeof(r) ? m->size : sizeof(r);
	r.size = n;
	memcpy(m, &r, n);
	return 0;
}

int weft_metrics(weft_runtime *rt, struct weft_metrics *m)
{
	return fill(rt, m, true, 0);
}

int weft_metrics_worker(weft_runtime *rt, unsigned index,
			struct weft_metrics *m)
{
	return fill(rt, m, false, index);
}

#else /* WEFT__NO_METRICS */

int weft_metrics(weft_runtime *rt, struct weft_metrics *m)
{
	(void)rt;
	(void)m;
	return -ENOTSUP;
}

int weft_metrics_worker(weft_runtime *rt, unsigned index,
			struct weft_metrics *m)
{
	(void)rt;
	(void)index;
	(void)m;
	return -ENOTSUP;
}

#endif /* WEFT__NO_METRICS */
