/*
 * Workers: the scheduler loop, next-task choice, stealing, switching
 * (worker.c).
 */
#ifndef WEFT_WORKER_H
#define WEFT_WORKER_H

#include <pthread.h>

#include "base.h"
#include "lq.h"
#include "metrics.h"
#include "ring.h"
#include "spin.h"
#include "stall.h"
#include "task.h"
#include "timer.h"
#include "tlist.h"

/* What the context being left asks the one it lands on to finish, once
 * the old stack is no longer in use (worker->prev_action). */
enum {
	WEFT__SW_NONE = 0,
	WEFT__SW_YIELD, /* requeue the previous task at the back */
	WEFT__SW_PARK,  /* commit its park: PARKING -> PARKED, or requeue */
	WEFT__SW_EXIT   /* it ended: free its stack, drop its own reference */
};

/* Operations a task may complete without suspending before it is made to
 * yield (Tokio's coop budget, same figure). */
#define WEFT__BUDGET 128

/* A worker looks at the inject queue first every this many picks (Go's
 * and Tokio's 61), so tasks there are not starved by a busy local queue. */
#define WEFT__INJECT_INTERVAL 61
/* A busy worker looks at its ring and the timers about this often (run
 * time measured at its picks; issue 17: a pick count alone left I/O and
 * timers waiting a second behind tasks that compute 1 ms at a time). */
#define WEFT__SERVE_NS (50 * WEFT_NSEC_PER_USEC)
/* Most woken tasks a worker running long slices keeps ahead of its local
 * queue (worker->woken); more go to the queue, where others can steal
 * them. */
#define WEFT__WOKEN_MAX 8
/* A worker that has switched no task for this long while requests wait on
 * its ring is stuck: another worker takes its completions (ring.c,
 * weft__ring_rescue), kicking it first if none are posted. A kick that
 * brings nothing doubles the wait before the next one, up to
 * WEFT__RESCUE_MAX_NS (what a completion may still wait); what a kick
 * brings is reaped at a look WEFT__RESCUE_KICK_LOOK_NS later; while some
 * busy worker has requests in flight, the watcher looks at least every
 * WEFT__RESCUE_LOOK_NS. */
#define WEFT__RESCUE_NS (500 * WEFT_NSEC_PER_USEC)
#define WEFT__RESCUE_MAX_NS (2 * WEFT_NSEC_PER_MSEC)
#define WEFT__RESCUE_KICK_LOOK_NS (100 * WEFT_NSEC_PER_USEC)
#define WEFT__RESCUE_LOOK_NS (2 * WEFT_NSEC_PER_MSEC)

/* ---- workers ---------------------------------------------------------- */

struct weft__worker {
	/* Fields stealers and wakers read; first, on their own line. */
	struct weft__lq lq;
	/* The one-task "next" slot for the task just woken or spawned: run
	 * before the queue; taken by thieves only as a last resort. */
	_Alignas(WEFT__CACHELINE) _Atomic(struct weft__tcb *) next;
	/* Count of tasks switched in; thieves watch it to tell whether the
	 * owner has been stuck in one task for a while. */
	atomic_ulong ticks;
	/* Written by other workers looking for a stuck owner with requests
	 * in flight (worker.c, rescue_due): the ticks they last saw, since
	 * when (ns), and how long to wait before the next rescue. Hints,
	 * relaxed. */
	atomic_ulong rescue_ticks;
	_Atomic uint64_t rescue_since;
	_Atomic uint64_t rescue_next; /* no kick before (ns) */
	_Atomic uint64_t rescue_gap;  /* between kicks that found nothing */

	/* Fields only the owning thread touches. */
	_Alignas(WEFT__CACHELINE) struct weft_runtime *rt;
	unsigned index;
	/* The task running now, NULL in the scheduler context. */
	struct weft__tcb *current;
	/* Hand-over from the context just left (see WEFT__SW_*). */
	struct weft__tcb *prev;
	int prev_action;
	/* Saved stack pointer of the scheduler context. */
	void *sched_sp;
	/* Cooperative budget left to the current task (task.c). */
	int budget;
	/* The task registry's coarse clock (weft_now() ns): read at each
	 * serve(), after each idle park and every 64th periodic pick that
	 * does not serve (dbg_round counts them), i.e. about every 4000
	 * picks (a clock read per switch or per wait cost more than a
	 * switch: rdtsc took 20-40 ns on the test machine, a VM). Owner
	 * only. */
	uint64_t dbg_now;
	unsigned dbg_round;
	/* Tasks taken from the next slot in a row (fairness bound). */
	unsigned next_streak;
	/* Owner's count of the woken list (below): an upper bound, as a
	 * thief may have taken some; read on every pick instead of woken_n,
	 * whose line other threads write. */
	unsigned woken_len;
	/* Scheduling ticks (alternates pinned and local-queue priority). */
	unsigned tick;
	/* Picks left until the periodic pick (pick_periodic: the ring, the
	 * timers, the inject queue first). The countdown starts from
	 * periodic_every, which adapts so that the periodic pick comes about
	 * every WEFT__SERVE_NS of run time, and at most every
	 * WEFT__INJECT_INTERVAL picks; periodic_at is when the last one
	 * ran (weft_now()). */
	unsigned inject_countdown;
	unsigned periodic_every;
	uint64_t periodic_at;
	/* Picks since the inject queue was last looked at first. */
	unsigned inject_picks;
	/* Something waits on time here (ring, timers, trim): the periodic
	 * pick reads the clock and serves it (worker.c, serve()). */
	bool serving;
	/* xorshift state for choosing a victim. */
	uint32_t rng;
	/* Whether this worker counts in the runtime's searching number. */
	bool searching;
	/* Whether this worker holds the timer keeper role (rt->keeper == w):
	 * from a park's weft__timer_keep() until it is about to run a task
	 * (weft__timer_unkeep(), timer.c). Owner only. */
	bool keeping;
	/* Hazard mode (WEFT_DEBUG_MIGRATE=1 in the environment): every
	 * yield goes through the inject queue, so tasks change worker as
	 * often as the scheduler allows. Makes migration bugs (a cached
	 * thread-local, errno across a switch) show up in tests. */
	bool debug_migrate;
	/* Pinned tasks ready to run here, private FIFO. */
	struct weft__tlist pins;
	/* Set by each serve(): the picks since the last one ran at least
	 * WEFT__SERVE_NS each on average, so the local queue's order costs
	 * a woken task whole slices. Only from a measure that covered run
	 * time alone (measured: no trip through the scheduler loop, which
	 * is where a worker idles, and no restart by serve_soon since the
	 * last serve); a server's worker coming back from a wait is not
	 * running long slices. */
	bool slices_long;
	bool measured;
	/* slices_long may outlast one quick pick (serve(): a short task
	 * among long slices); cleared by the quick pick it covers. */
	bool slices_grace;
	/* Hot free stacks (stack.c). */
	struct weft__stack *stk_free;
	unsigned stk_n;
	/* Free task control blocks (task.c). */
	struct weft__tcb *cb_free;
	unsigned cb_n;
	unsigned cb_trim_seen; /* rt->cb_trim_gen last answered */

	/* Pinned tasks woken by other threads, handed over under the lock. */
	_Alignas(WEFT__CACHELINE) weft__spin remote_lock;
	struct weft__tlist remote;
	atomic_int remote_n;
	/* Tasks woken here and displaced from the next slot by a newer
	 * wake while this worker runs long slices (slices_long): they run
	 * before the local queue, at most WEFT__WOKEN_MAX of them. On the
	 * back of the local queue, a read completed on a worker running 8
	 * tasks of 1 ms slices waited 7 ms behind them (issue 17). Under
	 * remote_lock: the owner takes them in order, and a thief takes one
	 * as it takes the next slot's, when the owner is stuck in a task.
	 * woken_n: their count, read without the lock as a hint. */
	struct weft__tlist woken;
	atomic_uint woken_n;

	/* Idle protocol (idle.c): set by the notifier that picked this
	 * worker from the sleeper stack, cleared by the worker. */
	atomic_int notified;
	struct weft__worker *sleep_next;
	bool sleeping; /* on the sleeper stack; guarded by the idle lock */

	/* The worker's reactor (ring.h). */
	_Alignas(WEFT__CACHELINE) struct weft__ring ring;

	/* Metrics (metrics.h): written by this worker's thread alone, read
	 * by weft_metrics() from anywhere; on lines of their own. */
	_Alignas(WEFT__CACHELINE) struct weft__wmetrics m;
	/* The stall watchdog's question and this worker's answer (stall.h). */
	_Alignas(WEFT__CACHELINE) struct weft__stall_slot stall;
	/* The worker's timing wheel: its tasks file their timers here
	 * (timer.c). */
	_Alignas(WEFT__CACHELINE) struct weft__wheel wheel;

	pthread_t thread;
	/* Alternate signal stack for stack-overflow reports (stack.c). */
	void *altstack;
	/* This thread had the stall signal blocked and weft__stall_thread_init()
	 * unblocked it (stall.c); the thread's own. */
	bool stall_unblocked;
#ifdef WEFT__TSAN
	void *tsan_sched_fiber;
#endif
#ifdef WEFT__ASAN
	const void *asan_sched_lo;
	size_t asan_sched_size;
	void *asan_fake;
#endif
};

/* ---- cross-file internals --------------------------------------------- */

/* The worker running the calling thread, or NULL. Never inlined and read
 * through an asm barrier, so that a task which migrated between threads
 * never uses a thread-local address computed before the switch (QEMU's
 * coroutine-tls rule, mordor issue 18). */
struct weft__worker *weft__worker_self(void);
/* What weft__worker_self() reads; read directly only by the SIGSEGV
 * handler (stack.c) and the stall handler (stall.c), which run on the
 * interrupted thread and cannot switch. */
extern __thread struct weft__worker *weft__worker_tls;
void weft__worker_set_self(struct weft__worker *w);

/* worker.c */
void weft__worker_schedule(struct weft__worker *w, struct weft__tcb *t, bool yield);
/* Something now waits on time on w (a request, a timer): its next pick
 * looks at the ring and timers and measures the pick rate afresh. Owner
 * only. */
void weft__worker_serve_soon(struct weft__worker *w);
void weft__worker_schedule_remote(struct weft_runtime *rt, struct weft__tcb *t);
struct weft__worker *weft__worker_switch_out(struct weft__worker *w, int action);
void weft__worker_loop(struct weft__worker *w);
void weft__worker_after_switch(struct weft__worker *w);

/* One operation completed without suspending: after WEFT__BUDGET in a row
 * the task yields, so it cannot starve its worker's queue (Tokio's coop
 * budget). w runs a task. */
static inline void weft__worker_budget_tick(struct weft__worker *w)
{
	if (weft__unlikely(--w->budget <= 0))
		weft__worker_switch_out(w, WEFT__SW_YIELD);
}

#endif /* WEFT_WORKER_H */
