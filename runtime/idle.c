/*
 * Idle workers: which ones search for work, which sleep, and who wakes whom.
 * The shape follows Tokio's multi-thread idle protocol (itself after Go's
 * spinning Ms), written anew for workers that sleep in their io_uring.
 *
 * State
 *   rt->idle_state  one atomic word: number of searching workers in the low
 *                   16 bits, number of unparked (not sleeping) workers above.
 *   rt->sleepers    stack of sleeping workers, under rt->idle_lock.
 *   w->searching    whether w is counted as searching (owner only).
 *   w->sleeping     whether w is on the sleeper stack (under idle_lock).
 *   w->notified     set (release, under idle_lock) by the notifier that
 *                   popped w; read (acquire) by w when it wakes.
 *
 * Rules
 *   - A worker with nothing local becomes a searcher only while fewer than
 *     half the workers search (so a burst of idleness does not turn into
 *     every worker hammering every queue), then steals.
 *   - A searcher that finds work stops searching; if it was the last one,
 *     it notifies: "a worker that finds work while others sleep wakes
 *     exactly one more". The woken worker starts as a searcher, so wake-ups
 *     cascade one at a time while there is work to share.
 *   - notify wakes a sleeper only when nobody searches (a searcher will find
 *     the work) and someone sleeps.
 *   - A worker going to sleep decrements the counts, pushes itself on the
 *     sleeper stack, and if it was the last searcher re-scans every queue
 *     and notifies if it finds work.
 *
 * Why no work is stranded
 *   Work lands in a queue and then its producer calls notify. Take a notify
 *   that skips because it sees searching > 0. Some searcher S was counted.
 *   S either finds work (and is running, so the queue it found is drained
 *   over time by it and its successors), or goes to sleep; the last searcher
 *   to leave decrements the count with a seq_cst RMW and then re-scans all
 *   queues. The producer's enqueue precedes its notify's load of the state;
 *   for inject pushes (foreign threads, where no worker would otherwise see
 *   the work) notify is preceded by a seq_cst fence, so the two form a
 *   Dekker pair: either the producer's load sees searching == 0 and wakes a
 *   sleeper, or the last searcher's re-scan sees the work. Pushes to a
 *   worker's own local queue use an unfenced check: the owner is running and
 *   will run that work itself, so a missed wake costs parallelism, not
 *   progress, and the owner re-checks at every scheduling tick while its
 *   queue holds more than the next task (worker.c).
 *   A notified sleeper is never lost: the notifier writes its eventfd (or
 *   sends MSG_RING) after popping it, and both stay pending in the ring until
 *   the sleeper waits, however late it gets there.
 */
#include "idle.h"
#include "lq.h"
#include "ring.h"
#include "runtime.h"
#include "spin.h"
#include "stack.h"
#include "task.h"
#include "timer.h"
#include "worker.h"

/* How long the watcher sleeps before looking at next slots again: from
 * WEFT__WATCH_MIN_NS, doubling after each watch up to WEFT__WATCH_MAX_NS,
 * back to the minimum when a watch found a stuck worker (worker.c). Go's
 * sysmon backs off from 20 us to 10 ms the same way. */
#define WEFT__WATCH_MIN_NS 100000u
#define WEFT__WATCH_MAX_NS 10000000u

#define SEARCH_ONE 1u
#define UNPARK_ONE (1u << 16)
#define N_SEARCHING(s) ((s) & 0xffffu)
#define N_UNPARKED(s) ((s) >> 16)

void weft__idle_init(struct weft_runtime *rt)
{
	atomic_init(&rt->idle_state, rt->nworkers * UNPARK_ONE);
	rt->sleepers = NULL;
}

/* weft__idle_notify() (idle.h) checks, without the lock, that nobody
 * searches and somebody sleeps; then this wakes one sleeper. */
void weft__idle_notify_slow(struct weft_runtime *rt)
{
	struct weft__worker *w;
	unsigned s;

	weft__spin_lock(&rt->idle_lock);
	s = atomic_load_explicit(&rt->idle_state, memory_order_relaxed);
	w = rt->sleepers;
	if (N_SEARCHING(s) != 0 || !w) {
		weft__spin_unlock(&rt->idle_lock);
		return;
	}
	rt->sleepers = w->sleep_next;
	w->sleeping = false;
	/* The woken worker starts out as a searcher. */
	atomic_fetch_add_explicit(&rt->idle_state, UNPARK_ONE + SEARCH_ONE,
				  memory_order_seq_cst);
	atomic_store_explicit(&w->notified, 1, memory_order_release);
	weft__spin_unlock(&rt->idle_lock);

	weft__ring_wake(weft__worker_self(), w);
}

bool weft__idle_try_search(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;
	unsigned s;

	if (w->searching)
		return true;
	s = atomic_load_explicit(&rt->idle_state, memory_order_relaxed);
	if (2 * N_SEARCHING(s) >= rt->nworkers)
		return false;
	atomic_fetch_add_explicit(&rt->idle_state, SEARCH_ONE,
				  memory_order_seq_cst);
	w->searching = true;
	return true;
}

void weft__idle_stop_search(struct weft__worker *w)
{
	unsigned prev;

	if (!w->searching)
		return;
	w->searching = false;
	prev = atomic_fetch_sub_explicit(&w->rt->idle_state, SEARCH_ONE,
					 memory_order_seq_cst);
	if (N_SEARCHING(prev) == 1)
		weft__idle_notify(w->rt, false);
}

/* Is there queued work anywhere a sleeper could take? Next slots do not
 * count: they are stolen only from a stuck owner (see watch_claim). */
static bool work_pending(struct weft_runtime *rt)
{
	unsigned i;

	if (atomic_load_explicit(&rt->inject_len, memory_order_relaxed))
		return true;
	for (i = 0; i < rt->nworkers; i++)
		if (weft__lq_len(&rt->workers[i]->lq))
			return true;
	return false;
}

/*
 * The next-slot watcher. A task in a worker's next slot waits for that
 * worker's current task to suspend; if it computes for long, someone else
 * must take the task over (search() does, after checking that the owner
 * has not switched for 3 us). A searcher is awake to do so, but sleepers
 * are not, and waking one for every task put in a next slot would cost a
 * syscall per message between two tasks. Instead, while any worker is
 * awake, one sleeper holds the watcher role and sleeps with a timeout
 * (100 us to 10 ms, backing off), then searches again. A next slot can only be full while
 * its owner is awake, so when every worker sleeps nobody watches and the
 * runtime is fully idle. Cost: at most 100 wake-ups a second of one worker
 * once the back-off has settled, while the runtime is partly busy; a task
 * behind a stuck worker waits at most about one watch interval (Go's sysmon
 * does this job for runnext).
 */
static bool watch_claim(struct weft__worker *w, unsigned state)
{
	int expect = 0;

	if (N_UNPARKED(state) == 0)
		return false;
	return atomic_compare_exchange_strong_explicit(
		&w->rt->watcher, &expect, 1, memory_order_acq_rel,
		memory_order_relaxed);
}

/*
 * The watch must also exist when a worker woke alone from a fully idle
 * runtime (for I/O, a remote hand-over, a foreign spawn): nobody parked
 * while it was awake, so nobody claimed the role, and a task it puts in
 * its next slot before computing for long would wait the whole time
 * with every other worker asleep (bug 4 of issue 9: 300 ms). So the
 * worker that fills its next slot while running a task calls this: with
 * no watcher and nobody searching, one sleeper is woken; it searches
 * (and takes the task if the owner stays stuck), then parks as the
 * watcher since a worker is awake. Once a watcher exists this is one
 * relaxed load; a missed watcher (the flag read just before a watcher
 * gives the role up) leaves the next park's claim to restore it, and the
 * check is made again at the next scheduling of a next slot.
 *
 * weft__idle_watch() itself is inline, in idle.h. */

static void idle_unpark(struct weft__worker *w);

void weft__idle_park(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;
	unsigned dec = UNPARK_ONE, prev;
	uint64_t keep, trim, cb, wait_ns = 0;
	bool last, watching;

	weft__spin_lock(&rt->idle_lock);
	if (w->searching)
		dec += SEARCH_ONE;
	prev = atomic_fetch_sub_explicit(&rt->idle_state, dec,
					 memory_order_seq_cst);
	last = w->searching && N_SEARCHING(prev) == 1;
	w->searching = false;
	w->sleep_next = rt->sleepers;
	rt->sleepers = w;
	w->sleeping = true;
	weft__spin_unlock(&rt->idle_lock);

	/* A seq_cst RMW does not order later relaxed loads of other
	 * locations in C11 (on ARMv8.0 a plain load may pass the STLXR; only
	 * x86 and LSE happen to order them): this fence does, pairing with
	 * the fence in weft__idle_notify(rt, true) after an inject push and
	 * after timer_add's store of its wheel's next. Without it the re-scan
	 * below and weft__timer_keep()'s pre-check may read old values
	 * while the producer reads our old idle_state: a stranded task or a
	 * late timer (tests/model: idle_notify and timer_keeper, weak RMW). */
	atomic_thread_fence(memory_order_seq_cst);
	if (last && work_pending(rt))
		weft__idle_notify(rt, false);

	watching = watch_claim(w, prev - dec);
	/* The timer keeper sleeps no longer than the earliest timer. */
	keep = weft__timer_keep(w);
	if (keep) {
		uint64_t now = weft_now();

		if (keep <= now) {
			wait_ns = 1; /* due already: only collect wake-ups */
		} else {
			wait_ns = keep - now;
		}
	}
	/* Warm stacks or control blocks to give back later: do not sleep
	 * past that. */
	trim = weft__stack_trim(w, weft_now());
	cb = weft__task_trim(w, weft_now());
	if (cb && (!trim || cb < trim))
		trim = cb;
	if (trim) {
		uint64_t now = weft_now(), t = trim > now ? trim - now : 1;

		if (!wait_ns || t < wait_ns)
			wait_ns = t;
	}
	weft__metrics_park_begin(w);
	if (watching) {
		/* The watcher doubles watch_ns; lookers may lower it (a
		 * stuck worker found, a rescue due soon: worker.c). Relaxed:
		 * a hint, and the role's acquire/release orders successive
		 * watchers. */
		unsigned long ns = atomic_load_explicit(&rt->watch_ns,
							memory_order_relaxed);
		if (ns < WEFT__WATCH_MIN_NS)
			ns = WEFT__WATCH_MIN_NS;
		atomic_store_explicit(&rt->watch_ns,
				      ns * 2 > WEFT__WATCH_MAX_NS
					      ? WEFT__WATCH_MAX_NS
					      : ns * 2,
				      memory_order_relaxed);
		weft__ring_wait(w, wait_ns && wait_ns < ns ? wait_ns : ns);
		atomic_store_explicit(&rt->watcher, 0, memory_order_release);
	} else {
		weft__ring_wait(w, wait_ns);
	}
	/* A hint for the count: idle_unpark() reads it properly. */
	weft__metrics_park_end(w, atomic_load_explicit(&w->notified,
						       memory_order_relaxed));
	/* Off the sleeper stack first: firing timers notifies, and a notify
	 * must not pick us. */
	idle_unpark(w);
	/* Fire what is due (every wheel: this worker is idle). A keeper
	 * keeps its role: it gives it up when it is about to run a task
	 * (worker.c), not at every wake-up, which handed the role to a
	 * second worker (a notify and its wake-up) at each watch timeout
	 * while timers were pending. */
	weft__timer_poll(w, false);
}

/* Leaving the sleeper stack after a wait, whoever woke us. */
static void idle_unpark(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;

	if (atomic_exchange_explicit(&w->notified, 0, memory_order_acquire)) {
		/* The notifier counted us unparked and searching. */
		w->searching = true;
		return;
	}
	/* Woken by something else (a pinned task handed over, I/O, the
	 * stop signal): take ourselves off the sleeper stack, unless a
	 * notifier got there first. */
	weft__spin_lock(&rt->idle_lock);
	if (w->sleeping) {
		struct weft__worker **pp = &rt->sleepers;
		while (*pp != w)
			pp = &(*pp)->sleep_next;
		*pp = w->sleep_next;
		w->sleeping = false;
		atomic_fetch_add_explicit(&rt->idle_state, UNPARK_ONE,
					  memory_order_seq_cst);
	} else if (atomic_exchange_explicit(&w->notified, 0,
					    memory_order_acquire)) {
		w->searching = true;
	}
	weft__spin_unlock(&rt->idle_lock);
}

void weft__idle_wake_all(struct weft_runtime *rt)
{
	struct weft__worker *self = weft__worker_self();
	unsigned i;

	for (i = 0; i < rt->nworkers; i++)
		if (rt->workers[i] != self)
			weft__ring_wake(NULL, rt->workers[i]);
}
