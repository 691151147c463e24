/*
 * The scheduler: how a worker chooses the next task, hands tasks to other
 * workers, steals, and switches stacks.
 *
 * Each worker thread has a scheduler context (its own thread stack) and runs
 * tasks on their stacks. A task that suspends picks the next local task
 * itself and switches straight to it, one stack switch per hand-over; only
 * when nothing is ready locally does it switch to the scheduler context,
 * which steals, or sleeps in the worker's ring.
 *
 * Whatever the context being left still needs done once its stack is idle
 * (requeue it after a yield, commit its park, free it after it ended) is
 * recorded in w->prev / w->prev_action and done by weft__worker_after_switch() on
 * the context that is switched to, first thing. A task is thus never
 * visible to another worker while its stack is still in use.
 *
 * Choice of the next task (pick_local), in order:
 *   - about every WEFT__SERVE_NS (50 us) of run time, measured at picks
 *     (at least every pick, at most every 61st), the ring is polled and due
 *     timers fired, so I/O and timers are served on a busy worker too;
 *   - every 61st tick, the inject queue first (nothing waits forever there);
 *   - the next slot (the task just woken or spawned: message-passing pairs
 *     run back to back), then the woken tasks the slot's newer occupants
 *     displaced while this worker runs long slices (worker->woken), at
 *     most WEFT__NEXT_STREAK of the two in a row;
 *   - pinned tasks and the local queue, alternating which goes first;
 *   - the inject queue.
 * Stealing (scheduler context only): the inject queue, then half of a
 * victim's queue, victims tried from a random start; last, a victim's next
 * slot or oldest woken task, but only if that victim has not switched task
 * for a few microseconds (it is stuck in a long task; Go's runqgrab waits
 * 3 us the same way), so message-passing pairs are not split while they
 * progress.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "idle.h"
#include "inject.h"
#include "lq.h"
#include "ring.h"
#include "runtime.h"
#include "spin.h"
#include "stack.h"
#include "task.h"
#include "timer.h"
#include "tlist.h"
#include "worker.h"
#include "arch/ctx.h"

#define WEFT__NEXT_STREAK 32
#define WEFT__NEXT_STEAL_NS 3000

__thread struct weft__worker *weft__worker_tls
	__attribute__((tls_model("initial-exec")));

struct weft__worker *weft__worker_self(void)
{
	struct weft__worker *w;

	/* The asm barrier keeps the compiler from treating this call as
	 * pure and reusing its result across a switch. */
	__asm__ volatile("" ::: "memory");
	w = weft__worker_tls;
	return w;
}

void weft__worker_set_self(struct weft__worker *w)
{
	weft__worker_tls = w;
	weft__spin_set_worker(w != NULL);
}

/* ---- handing tasks to queues ------------------------------------------ */

static void lq_push(struct weft__worker *w, struct weft__tcb *t)
{
	while (!weft__lq_push(&w->lq, t)) {
		struct weft__tcb *h, *tl;
		unsigned n = weft__lq_take_half(&w->lq, &h, &tl);
		if (n) {
			tl->qnext = t;
			weft__inject_push(w->rt, h, t, n + 1);
			return;
		}
	}
}

/* Pinned task woken by a thread other than its home worker. The seq_cst
 * increment of remote_n pairs with the home worker's seq_cst store of
 * ring.in_wait before it checks remote_n and blocks (ring.c): either it
 * sees the count, or we see it waiting and wake it. */
static void remote_push(struct weft__worker *home, struct weft__tcb *t)
{
	weft__spin_lock(&home->remote_lock);
	weft__tlist_append(&home->remote, t, t);
	atomic_fetch_add_explicit(&home->remote_n, 1, memory_order_seq_cst);
	weft__spin_unlock(&home->remote_lock);
	if (atomic_load_explicit(&home->ring.in_wait, memory_order_seq_cst))
		weft__ring_wake(weft__worker_self(), home);
}

static void remote_drain(struct weft__worker *w)
{
	struct weft__tlist got;

	weft__spin_lock(&w->remote_lock);
	got = w->remote;
	w->remote.head = w->remote.tail = NULL;
	atomic_store_explicit(&w->remote_n, 0, memory_order_relaxed);
	weft__spin_unlock(&w->remote_lock);
	if (got.head)
		weft__tlist_append(&w->pins, got.head, got.tail);
}

/* The woken list (worker->woken): the owner appends and takes in order;
 * a thief takes the oldest of a stuck owner's. Under remote_lock: the
 * unlock after an append (release) pairs with a thief's lock (acquire),
 * so the task is published to it. woken_n is written only under the
 * lock and read without it by thieves, as a hint: a stale 0 skips a
 * victim this round (the watcher's next search comes back), a stale
 * count finds the list empty under the lock. */
static __attribute__((noinline, cold)) void
woken_push(struct weft__worker *w, struct weft__tcb *t)
{
	weft__spin_lock(&w->remote_lock);
	weft__tlist_append(&w->woken, t, t);
	atomic_store_explicit(&w->woken_n,
			      atomic_load_explicit(&w->woken_n,
						   memory_order_relaxed) + 1,
			      memory_order_relaxed);
	weft__spin_unlock(&w->remote_lock);
	w->woken_len++;
	if (w->current)
		weft__idle_watch(w->rt);
}

static __attribute__((noinline)) struct weft__tcb *
woken_pop(struct weft__worker *v)
{
	struct weft__tcb *t;

	weft__spin_lock(&v->remote_lock);
	t = weft__tlist_pop(&v->woken);
	if (t)
		atomic_store_explicit(&v->woken_n,
				      atomic_load_explicit(&v->woken_n,
							   memory_order_relaxed) - 1,
				      memory_order_relaxed);
	weft__spin_unlock(&v->remote_lock);
	return t;
}

/* The owner's take: keeps its count, which a thief's takes leave high. */
static struct weft__tcb *woken_take(struct weft__worker *w)
{
	struct weft__tcb *t = woken_pop(w);

	w->woken_len = t ? w->woken_len - 1 : 0;
	return t;
}

/* Moves the oldest woken task into the empty next slot (owner only; only
 * the owner fills the slot, thieves only empty it, so a slot the owner
 * saw empty stays empty until this store). Release: publishes the task
 * to a thief's acquire load and CAS, as schedule's exchange does. */
static __attribute__((noinline)) void woken_refill(struct weft__worker *w)
{
	struct weft__tcb *t = woken_take(w);

	if (t)
		atomic_store_explicit(&w->next, t, memory_order_release);
}

void weft__worker_schedule(struct weft__worker *w, struct weft__tcb *t, bool yield)
{
	bool pinned = weft__task_flags(t) & WEFT__T_PINNED;
	struct weft__worker *home;

	if (pinned && ((home = weft__task_home(t)) != w || yield)) {
		if (home != w)
			remote_push(home, t);
		else
			weft__tlist_append(&w->pins, t, t);
		return;
	}
	/* A pinned task woken on its own worker (its I/O completed) takes
	 * the next slot like any woken task, so that it runs next rather
	 * than after the slices of the tasks queued before it (issue 17).
	 * steal_next() leaves pinned tasks in the slot; one displaced from
	 * it goes back to the pinned list, never to the stealable queue. */
	if (yield) {
		/* Back of our own queue. No notify: a yield adds no work,
		 * and pick_local() notifies whenever it leaves tasks behind
		 * the one it takes. */
		lq_push(w, t);
		return;
	}
	/* Release publishes t (its flags included) to a thief's acquire
	 * load and CAS of the slot. */
	t = atomic_exchange_explicit(&w->next, t, memory_order_acq_rel);
	if (t && (weft__task_flags(t) & WEFT__T_PINNED)) {
		weft__tlist_append(&w->pins, t, t);
	} else if (t && weft__unlikely(w->slices_long) &&
		   w->woken_len < WEFT__WOKEN_MAX) {
		/* Ahead of the queue's long slices; the one in the slot
		 * runs first (see worker->woken). Watched like the slot.
		 * A tail call: the fast paths keep no register. */
		woken_push(w, t);
		return;
	} else if (t) {
		lq_push(w, t);
		weft__idle_notify(w->rt, false);
	} else if (w->current) {
		/* It waits for the current task to suspend. */
		weft__idle_watch(w->rt);
	}
}

void weft__worker_schedule_remote(struct weft_runtime *rt, struct weft__tcb *t)
{
	if (weft__task_flags(t) & WEFT__T_PINNED) {
		remote_push(weft__task_home(t), t);
		return;
	}
	weft__inject_push(rt, t, t, 1);
	/* No worker of ours runs here: the work must not be stranded. */
	weft__idle_notify(rt, true);
}

/* ---- choosing the next task ------------------------------------------- */

#ifdef WEFT__REGISTRY
/* The task registry's coarse clock (weft__worker dbg_now): read by
 * serve(), after idle parks, and every 64th periodic pick that does not
 * serve. */
static __attribute__((noinline, cold)) void registry_clock(struct weft__worker *w)
{
	w->dbg_now = weft_now();
}
#endif

static struct weft__tcb *pick_inject(struct weft__worker *w)
{
	unsigned room = WEFT__LQ_SIZE - weft__lq_len(&w->lq);

	return weft__inject_pop(w->rt, w, room / 2 + 1);
}

/*
 * The periodic pick's service of time: the ring (completions reaped,
 * queued requests submitted), due timers, the stack trim. It comes about
 * every WEFT__SERVE_NS of run time, not every so many picks: picks that
 * come slowly (tasks computing for long between suspensions) shorten the
 * countdown at once, down to every pick; fast ones lengthen it one pick
 * per periodic pick, up to WEFT__INJECT_INTERVAL, which keeps the clock
 * read under half a nanosecond a pick. Lengthening slowly: one quick pick
 * between 1 ms slices must not set a countdown of 25 (a sleeper's wake-up
 * among 1 ms spinners did: 57 ms late). Called only while something waits
 * on time (pick_periodic); weft__worker_serve_soon() restarts the measure when
 * something new does.
 */
static void serve(struct weft__worker *w)
{
	uint64_t now = weft_now(), per_pick;
	unsigned every;

	per_pick = (now - w->periodic_at) / w->periodic_every + 1;
	every = per_pick >= WEFT__SERVE_NS
			? 1
			: (unsigned)(WEFT__SERVE_NS / per_pick);
	if (every > w->periodic_every + 1)
		every = w->periodic_every + 1;
	if (every > WEFT__INJECT_INTERVAL)
		every = WEFT__INJECT_INTERVAL;
	/* One quick pick between long slices (a 1 ms sleeper among tasks of
	 * 1 ms slices) is not a change of pace: it neither spaces the next
	 * serve out nor ends slices_long; two in a row do. Without this the
	 * serve after the sleeper's pick came two slices later, and a read
	 * completed meanwhile waited a second slice (loaded_read's p99 sat
	 * at 2 ms). */
	if (w->measured && per_pick >= WEFT__SERVE_NS) {
		w->slices_long = true;
		w->slices_grace = true;
	} else if (w->measured && w->slices_long && w->slices_grace) {
		every = 1;
		w->slices_grace = false;
	} else {
		w->slices_long = false;
		w->slices_grace = false;
	}
	w->periodic_every = every;
	w->measured = true;
	w->inject_countdown = every;
	w->periodic_at = now;
#ifdef WEFT__REGISTRY
	w->dbg_now = now;
#endif
	/* Before the inject queue is looked at, since a queue that never
	 * runs dry (tasks yielding through it) must not starve them (a
	 * sleeper never woke in hazard mode). */
	if (weft__ring_busy(&w->ring))
		weft__ring_poll(w);
	weft__timer_poll_at(w, now, true);
	/* Stack pages of a burst go back on a busy worker too, not only when
	 * one parks (issue 17: a server under steady load kept a burst's
	 * stacks resident for ever). */
	weft__stack_trim(w, now);
}

void weft__worker_serve_soon(struct weft__worker *w)
{
	/* Only when the worker was not serving: its countdown then came from
	 * the pick count, not from a measure. The next pick serves (its
	 * measure, from a periodic_at that may be old, gives every pick),
	 * and the countdown grows from there. Once serving, the measure is
	 * current and stays (resetting it on every request made a server
	 * poll its ring on every pick: http lost 20%). No clock read here:
	 * this is on every request's path. */
	if (!w->serving) {
		w->serving = true;
		w->measured = false;
		w->inject_picks += w->periodic_every - w->inject_countdown;
		w->periodic_every = 1;
		w->inject_countdown = 1;
	}
}

/* The rare part of pick_local(), out of line so that the common path
 * stays a short leaf: pinned tasks handed over by other threads, and every
 * WEFT__INJECT_INTERVAL-th pick the inject queue first (a countdown,
 * cheaper than a modulo) and the ring (Tokio's event_interval). */
static __attribute__((noinline)) struct weft__tcb *
pick_periodic(struct weft__worker *w)
{
	struct weft__tcb *t;

	if (atomic_load_explicit(&w->remote_n, memory_order_relaxed))
		remote_drain(w);
	/* A thief emptied the slot ahead of the woken tasks. Relaxed: a
	 * stale non-NULL (a thief's CAS not seen yet) only defers the
	 * refill to a later pick; NULL is never stale (see woken_refill). */
	if (weft__unlikely(w->woken_len) &&
	    !atomic_load_explicit(&w->next, memory_order_relaxed))
		woken_refill(w);
	if (w->inject_countdown == 0) {
		struct weft_runtime *rt = w->rt;
		bool inject_first;

		/* The inject queue first every WEFT__INJECT_INTERVAL picks
		 * still, however often the ring is looked at. */
		w->inject_picks += w->periodic_every;
		inject_first = w->inject_picks >= WEFT__INJECT_INTERVAL;
		if (inject_first)
			w->inject_picks = 0;
		/* Owner-only fields (serving, periodic_*, inject_*);
		 * the wheels' next and the trim hint are relaxed hints
		 * (timer.c, stack.c say why a stale one is harmless). */
		w->serving = weft__ring_busy(&w->ring) ||
			     weft__timer_pending(rt) ||
			     weft__stack_trim_wanted(w);
		/* Control blocks to give back: looked at here, without
		 * making the worker serve (a serving worker measures its
		 * picks and keeps woken tasks apart when they are long: with
		 * it, a spawning loop's pick looked like a long slice and
		 * spawn_many lost 15-25%). */
		if (weft__unlikely(weft__task_trim_wanted(w)))
			weft__task_trim(w, weft_now());
		if (w->serving) {
			serve(w);
		} else {
			/* Nothing waits on time: no clock read, and the
			 * countdown goes back to the pick count (a request or
			 * timer made here brings it down again). */
			w->periodic_every = WEFT__INJECT_INTERVAL;
			w->inject_countdown = WEFT__INJECT_INTERVAL;
			w->slices_long = false;
#ifdef WEFT__REGISTRY
			/* The registry's coarse clock, every 64th time here
			 * (about every 4000 picks): a clock read costs more
			 * than a switch on some machines. */
			if (!(++w->dbg_round & 63))
				registry_clock(w);
#endif
		}
		if (inject_first && (t = pick_inject(w)))
			return t;
	}
	return NULL;
}

/* Nothing in the usual places: pinned tasks, woken ones and the next
 * slot past their streak, then the inject queue. */
static __attribute__((noinline)) struct weft__tcb *
pick_rest(struct weft__worker *w)
{
	struct weft__tcb *t;

	if ((t = weft__tlist_pop(&w->pins)))
		return t;
	if (w->woken_len && (t = woken_take(w)))
		return t;
	if (atomic_load_explicit(&w->next, memory_order_relaxed) &&
	    (t = atomic_exchange_explicit(&w->next, NULL,
					  memory_order_acquire)))
		return t;
	return pick_inject(w);
}

static inline __attribute__((always_inline)) struct weft__tcb *
pick_local(struct weft__worker *w)
{
	struct weft__tcb *t;
	unsigned tick = ++w->tick;
	bool more;

	if (weft__unlikely((--w->inject_countdown == 0) |
			   (atomic_load_explicit(&w->remote_n,
						 memory_order_relaxed) != 0))) {
		t = pick_periodic(w);
		if (t)
			return t;
	}
	/* Load before exchanging: an RMW on an empty slot costs more than
	 * the rest of the pick. Only thieves write the slot besides us, and
	 * only to empty it. */
	if (w->next_streak < WEFT__NEXT_STREAK &&
	    atomic_load_explicit(&w->next, memory_order_relaxed)) {
		t = atomic_exchange_explicit(&w->next, NULL,
					     memory_order_acquire);
		if (t) {
			w->next_streak++;
			/* Woken tasks the slot's newer occupants displaced
			 * follow it through the slot, so the same streak
			 * bounds them and a pick whose slot is empty (every
			 * yield) pays nothing for them. */
			if (weft__unlikely(w->woken_len))
				woken_refill(w);
			return t;
		}
	}
	w->next_streak = 0;
	if ((tick & 1) && w->pins.head)
		return weft__tlist_pop(&w->pins);
	t = weft__lq_pop(&w->lq, &more);
	if (t) {
		/* More work than this worker is about to run: make sure an
		 * idle worker hears of it (cheap unless someone sleeps). */
		if (more)
			weft__idle_notify(w->rt, false);
		return t;
	}
	return pick_rest(w);
}

static uint32_t rng_next(struct weft__worker *w)
{
	uint32_t x = w->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return w->rng = x;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The watcher looks again within ns (a hint: the watcher reads it before
 * its next wait, idle.c). */
static void watch_within(struct weft_runtime *rt, uint64_t ns)
{
	if (atomic_load_explicit(&rt->watch_ns, memory_order_relaxed) > ns)
		atomic_store_explicit(&rt->watch_ns, ns, memory_order_relaxed);
}

enum { RESCUE_NO, RESCUE_REAP, RESCUE_KICK };

/*
 * Whether v is stuck, having switched no task for WEFT__RESCUE_NS while
 * requests wait on its ring, and what to do: reap the completions posted
 * (a kick's), or kick it (not before rescue_next). Judged across looks,
 * with no waiting here: a look that finds v's ticks moved records them
 * and the time, a later one that finds them unchanged long enough says
 * stuck. A worker blocked in its ring is not stuck (it reaps when
 * something comes). Each look asks the watcher back in time for the next
 * verdict. Every field is a hint: lookers racing on the record only move
 * a verdict by one look.
 */
static int rescue_due(struct weft__worker *v)
{
	struct weft_runtime *rt = v->rt;
	unsigned long ticks;
	uint64_t now, since, next;

	if (!weft__ring_inflight(&v->ring) ||
	    atomic_load_explicit(&v->ring.in_wait, memory_order_relaxed))
		return RESCUE_NO;
	ticks = atomic_load_explicit(&v->ticks, memory_order_relaxed);
	now = now_ns();
	if (ticks != atomic_load_explicit(&v->rescue_ticks,
					  memory_order_relaxed)) {
		atomic_store_explicit(&v->rescue_ticks, ticks,
				      memory_order_relaxed);
		atomic_store_explicit(&v->rescue_since, now,
				      memory_order_relaxed);
		atomic_store_explicit(&v->rescue_next, now + WEFT__RESCUE_NS,
				      memory_order_relaxed);
		atomic_store_explicit(&v->rescue_gap, WEFT__RESCUE_NS,
				      memory_order_relaxed);
		watch_within(rt, WEFT__RESCUE_LOOK_NS);
		return RESCUE_NO;
	}
	since = atomic_load_explicit(&v->rescue_since, memory_order_relaxed);
	if (now - since < WEFT__RESCUE_NS) {
		watch_within(rt, since + WEFT__RESCUE_NS - now);
		return RESCUE_NO;
	}
	if (weft__ring_cq_posted(&v->ring))
		return RESCUE_REAP;
	next = atomic_load_explicit(&v->rescue_next, memory_order_relaxed);
	if (now < next) {
		watch_within(rt, next - now);
		return RESCUE_NO;
	}
	return RESCUE_KICK;
}

/* After a rescue of v that woke `woken` tasks or kicked v: the next kick
 * comes WEFT__RESCUE_NS later if this one found something, else after
 * twice the last wait (a stuck worker whose requests wait for data is not
 * kicked at every look); a kick's completions are reaped soon. */
static void rescue_done(struct weft__worker *v, unsigned woken, bool kicked)
{
	uint64_t gap = atomic_load_explicit(&v->rescue_gap,
					    memory_order_relaxed);

	if (woken)
		gap = WEFT__RESCUE_NS;
	else if (kicked)
		gap = gap * 2 > WEFT__RESCUE_MAX_NS ? WEFT__RESCUE_MAX_NS
						     : gap * 2;
	atomic_store_explicit(&v->rescue_gap, gap, memory_order_relaxed);
	if (woken || kicked)
		atomic_store_explicit(&v->rescue_next, now_ns() + gap,
				      memory_order_relaxed);
	watch_within(v->rt, kicked ? WEFT__RESCUE_KICK_LOOK_NS : gap);
}

/* Last resort: the next slot, or else the oldest woken task (worker->
 * woken), of a victim stuck in one task; or the completions waiting on
 * the ring of a victim stuck for longer (weft__ring_rescue), which wakes
 * their tasks here. */
static struct weft__tcb *steal_next(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;
	unsigned n = rt->nworkers, i;

	for (i = 0; i < n; i++) {
		struct weft__worker *v = rt->workers[i];
		struct weft__tcb *t;
		unsigned long ticks;
		uint64_t until;

		if (v == w)
			continue;
		int due = rescue_due(v);

		if (due != RESCUE_NO) {
			bool kicked = false;
			unsigned woken = weft__ring_rescue(
				v, due == RESCUE_KICK ? &kicked : NULL);

			rescue_done(v, woken, kicked);
			if (woken && (t = pick_local(w)))
				return t;
		}
		if (!atomic_load_explicit(&v->next, memory_order_relaxed) &&
		    !atomic_load_explicit(&v->woken_n, memory_order_relaxed))
			continue;
		ticks = atomic_load_explicit(&v->ticks, memory_order_relaxed);
		/* A worker that has never switched to a task is starting,
		 * not stuck: weft_run's main waits in worker 0's slot for the
		 * calling thread (weft.h: it becomes worker 0), which a slow
		 * start (TSan) let a thief take. */
		if (ticks == 0)
			continue;
		until = now_ns() + WEFT__NEXT_STEAL_NS;
		/* Backing off to yields: with more workers than cores the
		 * victim may need this CPU to move on. */
		unsigned spin = 0;
		while (now_ns() < until)
			weft__spin_backoff(&spin);
		if (atomic_load_explicit(&v->ticks, memory_order_relaxed) !=
		    ticks)
			continue; /* it moved on: leave the pair together */
		t = atomic_load_explicit(&v->next, memory_order_acquire);
		/* A pinned task stays with its worker. Its flags were stored
		 * before the release that put it in the slot, which this
		 * acquire load pairs with; a CAS that then succeeds took it
		 * before it ran, so they had not changed. */
		if (t && (weft__task_flags(t) & WEFT__T_PINNED))
			t = NULL;
		if ((t && atomic_compare_exchange_strong_explicit(
				  &v->next, &t, NULL, memory_order_acq_rel,
				  memory_order_relaxed)) ||
		    (atomic_load_explicit(&v->woken_n, memory_order_relaxed) &&
		     (t = woken_pop(v)))) {
			/* A stuck worker was found: watch closely again
			 * (idle.c). */
			atomic_store_explicit(&rt->watch_ns, 0,
					      memory_order_relaxed);
			WEFT__METRIC(w, steals, 1);
			WEFT__METRIC(w, stolen, 1);
			return t;
		}
	}
	return NULL;
}

static struct weft__tcb *search(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;
	unsigned n = rt->nworkers, i, round;
	struct weft__tcb *t;

	if (!weft__idle_try_search(w))
		return NULL;
	for (round = 0; round < 2; round++) {
		unsigned start;

		t = pick_inject(w);
		if (t)
			return t;
		start = rng_next(w) % n;
		for (i = 0; i < n; i++) {
			struct weft__worker *v = rt->workers[(start + i) % n];
			if (v == w)
				continue;
			t = weft__lq_steal(&v->lq, &w->lq);
			if (t) {
				/* The one to run, and those now queued. */
				WEFT__METRIC(w, steals, 1);
				WEFT__METRIC(w, stolen,
					     1 + weft__lq_len(&w->lq));
				return t;
			}
		}
	}
	return steal_next(w);
}

/* ---- switching -------------------------------------------------------- */

static inline void san_start(struct weft__worker *w, struct weft__tcb *from,
			     struct weft__tcb *to, bool leaving_for_good)
{
#ifdef WEFT__ASAN
	/* A context left for good passes NULL so ASan drops its fake
	 * stack. */
	void **fake = leaving_for_good ? NULL
			: (from ? &from->asan_fake : &w->asan_fake);
	if (to)
		__sanitizer_start_switch_fiber(fake, to->stack->lo,
					       to->stack->size);
	else
		__sanitizer_start_switch_fiber(fake, w->asan_sched_lo,
					       w->asan_sched_size);
#else
	(void)from;
	(void)leaving_for_good;
#endif
#ifdef WEFT__TSAN
	__tsan_switch_to_fiber(to ? to->tsan_fiber : w->tsan_sched_fiber, 0);
#else
	(void)w;
	(void)to;
#endif
}

static inline void san_finish(struct weft__worker *w)
{
#ifdef WEFT__ASAN
	struct weft__tcb *cur = w->current;
	__sanitizer_finish_switch_fiber(cur ? cur->asan_fake : w->asan_fake,
					NULL, NULL);
#else
	(void)w;
#endif
}

/* Gives t a stack and an initial frame if it has never run. False if no
 * stack can be had: t is then ended with -ENOMEM. The first run only; out
 * of line so that prepare() stays a test in the switch path. */
static __attribute__((noinline)) bool prepare_first(struct weft__worker *w,
						    struct weft__tcb *t)
{
	struct weft__stack *s;

	s = weft__stack_get(w, weft__task_stack_size(t));
	if (!s) {
		weft__task_fail_start(w, t, -ENOMEM);
		return false;
	}
	t->stack = s;
	/* The spawner's floating-point control state, not whatever the
	 * task switching out here happens to run with. */
	t->sp = weft__ctx_make(s->lo, s->lo + s->size, weft__task_entry, t,
			       t->fpctl);
#ifdef WEFT__TSAN
	t->tsan_fiber = __tsan_create_fiber(0);
	__tsan_set_fiber_name(t->tsan_fiber, t->name);
#endif
#ifdef WEFT__ASAN
	t->asan_fake = NULL;
#endif
	return true;
}

static inline bool prepare(struct weft__worker *w, struct weft__tcb *t)
{
	return weft__likely(t->sp != NULL) || prepare_first(w, t);
}

void weft__worker_after_switch(struct weft__worker *w)
{
	struct weft__tcb *p = w->prev;
	int s;

	san_finish(w);
	if (!p)
		return;
	w->prev = NULL;
	switch (w->prev_action) {
	case WEFT__SW_YIELD:
		if (weft__unlikely(w->debug_migrate) &&
		    !(weft__task_flags(p) & WEFT__T_PINNED)) {
			weft__inject_push(w->rt, p, p, 1);
			weft__idle_notify(w->rt, true);
			break;
		}
		weft__worker_schedule(w, p, true);
		break;
	case WEFT__SW_PARK:
		s = WEFT__PARKING;
		/* Commit the park now that p's stack is idle. Failure means
		 * a waker saw PARKING and left the queueing to us. */
		if (!atomic_compare_exchange_strong_explicit(
			    &p->park, &s, WEFT__PARKED, memory_order_acq_rel,
			    memory_order_acquire)) {
			/* Only a waker moves PARKING on, and only to
			 * NOTIFIED. */
			weft__assert(s == WEFT__NOTIFIED);
			weft__worker_schedule(w, p, true);
		}
		break;
	case WEFT__SW_EXIT:
		weft__assert(atomic_load_explicit(&p->done,
						  memory_order_relaxed));
#ifdef WEFT__TSAN
		__tsan_destroy_fiber(p->tsan_fiber);
		p->tsan_fiber = NULL;
#endif
		weft__stack_put(w, p->stack);
		p->stack = NULL;
		p->sp = NULL;
		WEFT__METRIC_FINISHED(w);
		weft__task_unref(p);
		break;
	}
}


/* Switch from the context whose stack pointer is saved in *save to task t
 * (or, t NULL, to the scheduler context). Returns, on the resumed side,
 * the worker we now run on. */
static struct weft__worker *switch_to(struct weft__worker *w, void **save,
				      struct weft__tcb *t, bool leaving)
{
	struct weft__tcb *from = w->current;

	w->current = t;
	if (t) {
		atomic_store_explicit(
			&w->ticks,
			atomic_load_explicit(&w->ticks, memory_order_relaxed) +
				1,
			memory_order_relaxed);

		w->budget = WEFT__BUDGET;
	}
	/* TSan wants its switch call immediately before the switch. */
	san_start(w, from, t, leaving);
	w = weft__ctx_switch(save, t ? t->sp : w->sched_sp, w);
	weft__worker_after_switch(w);
	return w;
}

struct weft__worker *weft__worker_switch_out(struct weft__worker *w, int action)
{
	struct weft__tcb *cur = w->current, *t = NULL;

	w->prev = cur;
	w->prev_action = action;
	if (!atomic_load_explicit(&w->rt->stopping, memory_order_relaxed)) {
		while ((t = pick_local(w)) && !prepare(w, t))
			;
	}
	return switch_to(w, &cur->sp, t, action == WEFT__SW_EXIT);
}

/* Before looking elsewhere for work: submit queued requests and collect
 * completions (with DEFER_TASKRUN they appear only when asked for), and
 * fire due timers. True if that may have made tasks runnable here. */
static bool idle_work(struct weft__worker *w)
{
	bool more = false;

	if (weft__ring_busy(&w->ring)) {
		weft__ring_poll(w);
		more = true;
	}
	more |= weft__timer_poll(w, false) != 0;
	return more;
}

void weft__worker_loop(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;

	while (!atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
		struct weft__tcb *t;

		/* Back in the scheduler: the time since the last serve was
		 * not all run time (see slices_long). */
		w->measured = false;
		t = pick_local(w);

		if (!t && idle_work(w))
			t = pick_local(w);
		if (!t)
			t = search(w);
		/* A worker woken by a notify comes back counted as searching;
		 * whether it then finds work locally or by stealing, it must
		 * stop searching, or every later notify sees a searcher and
		 * wakes nobody. */
		if (t && w->searching)
			weft__idle_stop_search(w);
		if (!t) {
			weft__idle_park(w);
#ifdef WEFT__REGISTRY
			registry_clock(w);
#endif
			continue;
		}
		/* The timer keeper keeps its role while it idles and parks
		 * again; it gives it up (and hands it on, timers pending)
		 * only now that it runs a task, which may be long (timer.c,
		 * "the keeper role"). */
		if (weft__unlikely(w->keeping))
			weft__timer_unkeep(w);
		if (!prepare(w, t))
			continue;
		w->prev = NULL;
		switch_to(w, &w->sched_sp, t, false);
	}
	if (w->searching)
		weft__idle_stop_search(w);
}

/* ---- questions about the calling worker -------------------------------- */

int weft_worker_index(void)
{
	struct weft__worker *w = weft__worker_self();

	return w ? (int)w->index : -1;
}

weft_runtime *weft_runtime_self(void)
{
	struct weft__worker *w = weft__worker_self();

	return w ? w->rt : NULL;
}

unsigned weft_worker_count(void)
{
	struct weft__worker *w = weft__worker_self();

	return w ? w->rt->nworkers : 0;
}
