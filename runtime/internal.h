/*
 * Internal layout of the runtime: tasks, workers, the runtime object, and the
 * helpers every runtime file shares (allocation hook, assertions, spinlock,
 * sanitizer switches). Never installed; the public header only declares
 * struct weft__tcb and struct weft_runtime.
 *
 * What each file owns, and which way calls go: docs/design/layers.md.
 */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <liburing.h>

#include "weft.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "perturb.h"
#include "ring.h"

#define WEFT__CACHELINE 64
#define WEFT__ALIGNED __attribute__((aligned(WEFT__CACHELINE)))
#define weft__likely(x) __builtin_expect(!!(x), 1)
#define weft__unlikely(x) __builtin_expect(!!(x), 0)

/* ---- sanitizers ------------------------------------------------------ */

#if defined(__SANITIZE_ADDRESS__)
#define WEFT__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT__ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT__TSAN 1
#endif
#endif

/* ---- assertions -------------------------------------------------------
 * Two kinds, kept apart (Lua's lua_assert vs api_check):
 *   weft__assert: internal invariants, compiled in debug and sanitizer
 *                 builds only;
 *   weft__check:  API misuse by the caller, which aborts with file:line in
 *                 every build, because carrying on would corrupt the runtime.
 */
void weft__die(const char *file, int line, const char *msg)
	__attribute__((noreturn, cold));
#if !defined(NDEBUG) || defined(WEFT__ASAN) || defined(WEFT__TSAN)
#define weft__assert(c) \
	((c) ? (void)0 : weft__die(__FILE__, __LINE__, "assertion failed: " #c))
#else
#define weft__assert(c) ((void)0)
#endif
#define weft__check(c, msg) \
	((c) ? (void)0 : weft__die(__FILE__, __LINE__, msg))

/* ---- live-object tags ----------------------------------------------------
 * Coordination objects (sync.c, chan.c, group.c) carry a tag set by their
 * create and cleared by their destroy, so that a second destroy (or one of
 * something that is no such object) aborts with a message instead of
 * freeing twice or spinning on a lock byte the allocator has reused. The
 * tag sits past an object's first 16 bytes, which glibc's free lists
 * overwrite. A detectable misuse only: memory reused by another object
 * since is not told apart. */
#define WEFT__LIVE 0x6c697665u /* "live" */
#define WEFT__DEAD 0x64656164u /* "dead" */
#define weft__live_end(tag, msg)                                           \
	do {                                                               \
		weft__check(*(tag) == WEFT__LIVE, msg);                    \
		*(tag) = WEFT__DEAD;                                       \
	} while (0)

/* ---- errno -------------------------------------------------------------
 * weft.h: I/O calls "never set errno". A public call that makes system
 * calls directly declares WEFT__KEEP_ERRNO first: errno is put back as it
 * was when the call returns (after its return value, which may read errno,
 * is computed). Inside a call that may suspend, the put-back may happen on
 * another thread; that thread's errno means nothing there at that moment
 * (weft.h: never read errno after a call that may suspend). */
static inline void weft__errno_restore(const int *saved)
{
	errno = *saved;
}
#define WEFT__KEEP_ERRNO                                                   \
	int weft__errno_saved_ __attribute__((cleanup(weft__errno_restore))) = \
		errno

/* ---- allocation --------------------------------------------------------
 * All heap memory of the runtime goes through these (Lua's lua_Alloc): one
 * place to count, to fail on purpose in tests, or to swap allocators. */
void *weft__malloc(size_t size);
void *weft__calloc(size_t n, size_t size);
void *weft__aligned_alloc(size_t align, size_t size);
/* Tests: fail allocations on demand (misc.c); declared again in
 * tests/weft_test.h, which cannot include this header. */
void weft__debug_fail_alloc(long skip, long n);
unsigned long weft__debug_fail_alloc_hits(void);
void weft__free(void *p);

/* ---- spinlock ----------------------------------------------------------
 * For critical sections of a few instructions (waiter lists, free lists).
 * acquire on lock pairs with release on unlock; C11 atomics so that
 * ThreadSanitizer sees every synchronisation (Concurrency Kit's inline-asm
 * atomics are invisible to it). */
typedef struct {
	atomic_bool held;
} weft__spin;

static inline void weft__cpu_relax(void)
{
#if defined(__x86_64__)
	__asm__ volatile("pause" ::: "memory");
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/*
 * One step of a spin-wait, with back-off: 1, 2, 4 ... 64 pauses, then a
 * sched_yield() per step. A waiter whose holder (or granter) was preempted
 * (more workers than cores, a busy machine, a thread outside the runtime
 * spinning on an object's lock) gives the CPU up instead of burning its
 * time slice; the common case, a holder running elsewhere for a few
 * instructions, stays a short pause loop. *n starts at 0 for each wait.
 * (Concurrency Kit's ck_backoff_eb has the exponential part only, with a
 * compiler barrier instead of a pause: no yield for a preempted holder.)
 */
#define WEFT__BACKOFF_YIELD 7
void weft__backoff_yield(void);
static inline void weft__backoff(unsigned *n)
{
	if (*n < WEFT__BACKOFF_YIELD) {
		for (unsigned i = 1u << *n; i; i--)
			weft__cpu_relax();
		++*n;
	} else {
		weft__backoff_yield();
	}
}

/* Contended: waits with weft__backoff() (misc.c). Out of line, so that
 * the uncontended lock stays one exchange in every caller (inlining the
 * back-off loop cost its callers their shrink-wrapped fast paths: five
 * register saves on every weft__idle_notify()). */
void weft__spin_lock_slow(weft__spin *l);

static inline void weft__spin_lock(weft__spin *l)
{
	if (weft__likely(!atomic_exchange_explicit(&l->held, true,
						   memory_order_acquire)))
		return;
	weft__spin_lock_slow(l);
}

static inline void weft__spin_unlock(weft__spin *l)
{
	atomic_store_explicit(&l->held, false, memory_order_release);
}

/* ---- tasks ------------------------------------------------------------ */

/* A parked task's way out of the objects it waits on, for a drop at
 * shutdown: embedded first in the waiter's own record (on its stack). */
struct weft__unwait {
	void (*fn)(struct weft__unwait *u);
};

/* Park states of a task (task->park). The protocol is argued in task.c. */
enum {
	WEFT__RUNNING = 0,  /* on a CPU or queued; no wait in progress */
	WEFT__PARKING = 1,  /* announced a wait, still on its stack */
	WEFT__PARKED = 2,   /* off its stack, waiting for a wake */
	WEFT__NOTIFIED = 3, /* woken; the next park re-checks its condition */
	WEFT__FREE = 4      /* control block is in the free pool */
};

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

/* task->flags: written by the spawner before the task is published, and
 * by io/ops.c around an I/O wait (pinned while a request is in flight;
 * unpinned by the completion, which may race with another waker reading
 * them: hence atomic; see io/ops.c). */
#define WEFT__T_PINNED 0x1u

struct weft__stack;
struct weft__worker;
struct weft__waiter;

/* One task-local value and the key it was stored under (tls.c). */
struct weft__tls_slot {
	void *value;
	unsigned key;
};

/*
 * A task control block. Allocated from the runtime's type-stable pool
 * (task.c): its memory stays a task control block until the runtime ends,
 * so a late wake-up or a stale handle reads a valid (if reused) block and
 * the generation number tells them apart. The program never sees one: its
 * `weft_task *` is a tagged handle (struct weft_task, never defined), a
 * different type, which task.c resolves (weft__handle() makes one), so
 * the compiler refuses a block where a handle is expected and back.
 */

struct weft__tcb {
	/* Saved stack pointer while off-CPU; NULL before the first run.
	 * Written by the worker that switches the task out, read by the one
	 * that switches it in; the run queues order the two. */
	void *sp;
	/* WEFT__RUNNING..WEFT__FREE; see the protocol in task.c. */
	atomic_int park;
	/* WEFT__T_* flags; read with weft__task_flags(). */
	atomic_uint flags;
	/* The stack, taken when the task first runs, given back when it
	 * ends (stack.c). */
	struct weft__stack *stack;
	/* Link in the inject queue, a worker's remote or pinned list, or the
	 * free pool. Owned by whoever holds the task in that list. */
	struct weft__tcb *qnext;
	/* Pinned tasks: the worker they always run on. */
	struct weft__worker *home;
	/* Body, argument, and result once returned. */
	weft_fn fn;
	void *arg;
	void *result;
	/* Usable stack size asked for; 0: the runtime's default. */
	size_t stack_size;
	/* Cancellation: set by weft_cancel() from any thread (release), read
	 * at suspension points (acquire). */
	atomic_int cancel;
	/* Shield depth; only the task itself touches it. */
	int shield;
	/* Outcome reported to awaiters: 0, -ECANCELED or -ENOMEM. Written
	 * before `done` is set (release), read after it (acquire). */
	int outcome;
	/* 1 once the task has ended and its result is final. */
	atomic_int done;
	/* Tasks waiting in weft_await(), guarded by wlock. */
	weft__spin wlock;
	struct weft__waiter *waiters;
	/* References: one per handle the program holds, one held by the
	 * task itself until it ends; the block returns to the pool at 0.
	 * Low 32 bits: all references; high 32: the program's share (handle
	 * references), so that a release past the last handle reference is
	 * refused (-ESRCH) instead of dropping the task's own, in the same
	 * single RMW (task.c). */
	_Atomic uint64_t refs;
	/* The block's handle (task.c): its place in the handle directory
	 * (slab id and index, fixed for the block's life) above its
	 * generation (low 36 bits, never 0), which is bumped each time the
	 * block returns to the pool. Read by any thread, so atomic. */
	_Atomic uint64_t handle;
	/* While parked on an object the program owns (a wait queue, a
	 * select): how to take its wait nodes back if the task is dropped
	 * at shutdown (weft__task_drop_all). Set and cleared by the task
	 * around its wait; read only after every worker has stopped. */
	struct weft__unwait *unwait;
	/* Floating-point control state the task starts with: its
	 * spawner's at the spawn (arch/switch.h weft__fpctl). */
	uint64_t fpctl;
	/* Deadline of the current weft_timeout_begin() scope (ns), or
	 * WEFT_NEVER; only the task itself touches it. */
	uint64_t deadline;
	/* Task group (group.c): the group, and the links of its list of
	 * live members; under the group's lock. */
	struct weft_group *group;
	struct weft__tcb *gnext, *gprev;
	/* weft_call_later/call_at: the task sleeps until this moment (ns)
	 * before fn runs; 0: start at once. Set before the task is queued. */
	uint64_t start_at;
	/* Task-local values (tls.c), allocated on first weft_tls_set(). */
	struct weft__tls_slot *tls;
	/* The runtime the task belongs to. */
	struct weft_runtime *rt;
#ifdef WEFT__TSAN
	void *tsan_fiber;
#endif
#ifdef WEFT__ASAN
	void *asan_fake; /* ASan fake-stack handle while switched out */
#endif
	char name[32];
};

/* ---- futex --------------------------------------------------------------
 * For threads outside any runtime that wait on runtime objects (weft_join,
 * sync objects): they block in the kernel on a 32-bit word. A wake may come
 * after the waiter has left and its word's memory was reused; a spurious
 * wake-up is all that does, and every waiter loops on its condition. */
void weft__futex_wait(atomic_int *word, int expected, uint64_t deadline);
void weft__futex_wake(atomic_int *word, int n);

/* ---- task lists ---------------------------------------------------------
 * An intrusive FIFO of tasks linked through task->qnext, for the inject
 * queue and the pinned and remote lists. No locking of its own: each user
 * says what guards it. */
struct weft__tlist {
	struct weft__tcb *head, *tail;
};

/* Appends the chain first..last (already linked through qnext). */
static inline void weft__tlist_append(struct weft__tlist *l,
				      struct weft__tcb *first,
				      struct weft__tcb *last)
{
	last->qnext = NULL;
	if (l->tail)
		l->tail->qnext = first;
	else
		l->head = first;
	l->tail = last;
}

static inline struct weft__tcb *weft__tlist_pop(struct weft__tlist *l)
{
	struct weft__tcb *t = l->head;

	if (t) {
		l->head = t->qnext;
		if (!l->head)
			l->tail = NULL;
		t->qnext = NULL;
	}
	return t;
}

/* ---- timers (timer.c) ---------------------------------------------------- */

#define WEFT__TICK_SHIFT 14u /* 16.384 us ticks */
#define WEFT__TICK_NS (UINT64_C(1) << WEFT__TICK_SHIFT)
#define WEFT__TIMER_LEVELS 6u

/* Timer node states; the protocol is argued in timer.c. */
enum {
	WEFT__TM_IDLE = 0,
	WEFT__TM_PENDING,
	WEFT__TM_FIRING,
	WEFT__TM_FIRED
};

/* One pending deadline; lives in its owner's memory (a waiting task's
 * stack). The firer wakes `task`. */
struct weft__timer {
	struct weft__timer *next, *prev; /* slot list, under the wheel lock */
	struct weft__timer *fnext;       /* the firer's private list */
	struct weft__tcb *task;
	uint64_t when; /* deadline in ticks, rounded up */
	atomic_int state;
	uint8_t lvl, slot;
};

struct weft__wheel {
	weft__spin lock;
	uint64_t elapsed; /* ticks processed so far */
	unsigned long count;
	uint64_t occupied[WEFT__TIMER_LEVELS];
	struct weft__timer *slot[WEFT__TIMER_LEVELS][64];
};

/* ---- the local run queue ---------------------------------------------- */

#define WEFT__LQ_SIZE 256u
#define WEFT__LQ_MASK (WEFT__LQ_SIZE - 1)

struct weft__lq {
	/* Next slot to take; advanced by the owner's pops and by stealers,
	 * always with a CAS. */
	_Alignas(WEFT__CACHELINE) atomic_uint head;
	/* Next slot to fill; written only by the owner. */
	_Alignas(WEFT__CACHELINE) atomic_uint tail;
	_Alignas(WEFT__CACHELINE) _Atomic(struct weft__tcb *) slot[WEFT__LQ_SIZE];
};

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
	/* Tasks taken from the next slot in a row (fairness bound). */
	unsigned next_streak;
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
	/* Hazard mode (WEFT_DEBUG_MIGRATE=1 in the environment): every
	 * yield goes through the inject queue, so tasks change worker as
	 * often as the scheduler allows. Makes migration bugs (a cached
	 * thread-local, errno across a switch) show up in tests. */
	bool debug_migrate;
	/* Pinned tasks ready to run here, private FIFO. */
	struct weft__tlist pins;
	/* Hot free stacks (stack.c). */
	struct weft__stack *stk_free;
	unsigned stk_n;
	/* Free task control blocks (task.c). */
	struct weft__tcb *cb_free;
	unsigned cb_n;

	/* Pinned tasks woken by other threads, handed over under the lock. */
	_Alignas(WEFT__CACHELINE) weft__spin remote_lock;
	struct weft__tlist remote;
	atomic_int remote_n;

	/* Idle protocol (idle.c): set by the notifier that picked this
	 * worker from the sleeper stack, cleared by the worker. */
	atomic_int notified;
	struct weft__worker *sleep_next;
	bool sleeping; /* on the sleeper stack; guarded by the idle lock */

	/* The worker's reactor (ring.h). */
	_Alignas(WEFT__CACHELINE) struct weft__ring ring;

	pthread_t thread;
	/* Alternate signal stack for stack-overflow reports (stack.c). */
	void *altstack;
#ifdef WEFT__TSAN
	void *tsan_sched_fiber;
#endif
#ifdef WEFT__ASAN
	const void *asan_sched_lo;
	size_t asan_sched_size;
	void *asan_fake;
#endif
};

/* ---- the blocking pool (pool.c) ----------------------------------------
 * Threads that run weft_run_blocking() calls. Every field is guarded by
 * `lock`; the protocol between a waiting task and a pool thread is argued
 * in pool.c. */
struct weft__job;
struct weft__pool_thread;

struct weft__pool {
	pthread_mutex_t lock;
	/* Idle threads wait here for a job (CLOCK_MONOTONIC, timed). */
	pthread_cond_t work;
	/* weft__pool_fini() waits here for the threads to leave. */
	pthread_cond_t gone;
	/* Jobs not yet taken by a thread, FIFO; they live on the stacks of
	 * the tasks that wait for them. */
	struct weft__job *head, *tail;
	unsigned queued;   /* jobs on the queue */
	unsigned threads;  /* threads created and not yet gone */
	unsigned idle;     /* threads waiting on `work` */
	unsigned starting; /* created, not yet at their first look at the
			      queue */
	unsigned max;      /* weft_config.blocking_threads */
	uint64_t idle_ns;  /* weft_config.blocking_idle_ms, in ns */
	/* The thread that left last, not yet joined: each leaving thread
	 * joins the one before it, weft__pool_fini() joins the last. */
	struct weft__pool_thread *exited;
	bool stop;  /* set by weft__pool_fini(): no new jobs, threads leave */
	bool ready; /* weft__pool_init() ran (fini does nothing before) */
};

/* ---- the runtime ------------------------------------------------------ */

struct weft__slab; /* task.c / stack.c bookkeeping */

struct weft_runtime {
	unsigned nworkers;
	struct weft__worker **workers;
	size_t stack_size;   /* default usable stack size, page multiple */
	unsigned stack_cache; /* per-worker hot stacks */
	int wake_mode;

	/* Global inject queue (inject.c). */
	_Alignas(WEFT__CACHELINE) weft__spin inject_lock;
	struct weft__tlist inject;
	atomic_uint inject_len;

	/* Idle protocol (idle.c): searching count in the low 16 bits,
	 * unparked count above; sleepers stack under idle_lock. */
	_Alignas(WEFT__CACHELINE) atomic_uint idle_state;
	weft__spin idle_lock;
	struct weft__worker *sleepers;
	/* 1 while a sleeper holds the next-slot watcher role, and the
	 * watcher's current sleep in ns (idle.c). */
	atomic_int watcher;
	atomic_ulong watch_ns;

	/* Set once the main task has ended: workers leave their loops. */
	_Alignas(WEFT__CACHELINE) atomic_int stopping;
	/* A ring failed for good (ring.c): the first -errno, stored
	 * before `stopping`; weft_run() returns it. 0: none. */
	atomic_int fatal;
	/* Worker threads of an explicit runtime that have left their loop
	 * (runtime.c): the last one after a fatal error ends what waits. */
	atomic_uint exited;

	/* Task control block pool (task.c). */
	weft__spin cb_lock;
	struct weft__tcb *cb_free;
	unsigned cb_free_n;
	struct weft__slab *cb_slabs;

	/* Stack pool (stack.c). */
	weft__spin stk_lock;
	struct weft__stack *stk_free; /* cold: pages given back */
	struct weft__stack *stk_warm; /* pages kept, trimmed with decay */
	unsigned long stk_warm_n;
	atomic_ulong stk_warm_hint; /* stk_warm_n, readable without lock */
	uint64_t stk_trim_at;       /* armed trim moment (ns), 0: none */
	struct weft__slab *stk_slabs;
	unsigned long stk_unarmed;  /* stacks of stk_slabs without a guard */
	size_t stk_guard;     /* guard bytes below each stack */
	int stk_guard_mode;   /* 0 none, 1 madvise guard, 2 mprotect */

	struct weft__tcb *main_task;

	/* Timer service (timer.c): the wheel, the earliest expiration in ns
	 * (WEFT_NEVER: none), and the keeper: the parked worker that sleeps
	 * no longer than timer_next, and until when it sleeps. */
	_Alignas(WEFT__CACHELINE) struct weft__wheel wheel;
	_Alignas(WEFT__CACHELINE) _Atomic(uint64_t) timer_next;
	_Atomic(struct weft__worker *) keeper;
	_Atomic(uint64_t) keeper_until;

	/* Blocking pool (pool.c). */
	_Alignas(WEFT__CACHELINE) struct weft__pool pool;

	/* Event-loop control (lifecycle.c; protocols argued there). */
	_Alignas(WEFT__CACHELINE) pthread_mutex_t life_lock;
	/* Broadcast under life_lock when a stop is requested or a close
	 * ends (run_forever and a second closer wait on it). */
	pthread_cond_t life_cond;
	/* Handle of the main task of the run in progress (weft_run or
	 * weft_runtime_run), which weft_stop() cancels; NULL when there is
	 * none or main has returned. Under life_lock. */
	weft_task *run_task;
	/* weft_runtime_close() has begun (under life_lock). */
	bool closing;
	/* The calling thread of weft_run() is worker 0 (set at start). */
	bool caller_is_worker;
	/* This runtime owns SIGINT and SIGTERM (set at start). */
	bool signals;
	/* weft_config.shutdown_grace_ms, resolved: < 0 none. */
	int grace_ms;
	/* Written under life_lock, read anywhere (is_running, is_closed,
	 * weft_stop_requested). */
	atomic_int running;
	atomic_int closed;
	atomic_int stop_requested;
	/* A stop no run has consumed yet (under life_lock). */
	bool stop_pending;
	/* Spawn gate for threads outside the runtime: `shutdown` set once
	 * shutdown begins, `outside` counts spawns from outside in flight. */
	atomic_int shutdown;
	atomic_uint outside;
	/* Start-up rendezvous of the worker threads (runtime.c). */
	struct weft__boot *boot;
};

/* ---- cross-file internals --------------------------------------------- */

/* The worker running the calling thread, or NULL. Never inlined and read
 * through an asm barrier, so that a task which migrated between threads
 * never uses a thread-local address computed before the switch (QEMU's
 * coroutine-tls rule, mordor issue 18). */
struct weft__worker *weft__worker_self(void);
void weft__worker_set_self(struct weft__worker *w);

/* task.c */
void weft__task_unref(struct weft__tcb *t);
void weft__task_entry(void *arg, void *ctx) __attribute__((noreturn));
void weft__task_wake(struct weft__tcb *t);
/* weft__task_wake(), but a parked task woken on this worker goes to the
 * back of its queue, not the next slot. The caller notifies. */
void weft__task_wake_back(struct weft__tcb *t);
void weft__task_fail_start(struct weft__worker *w, struct weft__tcb *t,
			   int err);
struct weft__worker *weft__park(struct weft__worker *w);
void weft__task_pool_fini(struct weft_runtime *rt);
int weft__spawn_main(struct weft_runtime *rt, weft_fn fn, void *arg,
		     struct weft__tcb **out);
weft_task *weft__handle(struct weft__tcb *t);

/* Acquire: pairs with the unpinning release store of a completion
 * (ring.c op_complete). */
static inline unsigned weft__task_flags(const struct weft__tcb *t)
{
	return atomic_load_explicit(&t->flags, memory_order_acquire);
}

/* Park protocol steps (argued in task.c). Step 1: announce the wait. */
static inline void weft__park_prepare(struct weft__tcb *t)
{
	atomic_exchange_explicit(&t->park, WEFT__PARKING, memory_order_acq_rel);
}

/* The condition held: no park after all. */
static inline void weft__park_done(struct weft__tcb *t)
{
	atomic_store_explicit(&t->park, WEFT__RUNNING, memory_order_relaxed);
}

static inline bool weft__cancel_pending(struct weft__tcb *t)
{
	return t->shield == 0 &&
	       atomic_load_explicit(&t->cancel, memory_order_acquire);
}

/* stack.c */
struct weft__stack {
	char *lo;              /* lowest usable byte */
	size_t size;           /* usable bytes */
	struct weft__stack *next;
	bool cold;             /* pages given back to the kernel */
	bool arena;            /* from the shared arena (else own mapping) */
	unsigned vg_id;        /* valgrind stack id */
};
int weft__stack_init(struct weft_runtime *rt);
void weft__stack_fini(struct weft_runtime *rt);
struct weft__stack *weft__stack_get(struct weft__worker *w, size_t size);
void weft__stack_put(struct weft__worker *w, struct weft__stack *s);
void weft__stack_drop(struct weft_runtime *rt, struct weft__stack *s);
int weft__stack_signal_init(struct weft__worker *w);
/* Called by a parking worker, and by busy ones from their periodic pick:
 * gives back pages of warm stacks beyond the hot caches once they have
 * been idle long enough. Returns the moment (ns) a trim is armed for,
 * which the worker should not sleep past, or 0. */
uint64_t weft__stack_trim(struct weft__worker *w, uint64_t now);
/* Whether the shared pool holds more warm stacks than the caches keep (a
 * trim is due or armed). A relaxed load. */
bool weft__stack_trim_wanted(struct weft__worker *w);
void weft__stack_signal_fini(struct weft__worker *w);

/* inject.c */
void weft__inject_push(struct weft_runtime *rt, struct weft__tcb *head,
		       struct weft__tcb *tail, unsigned n);
struct weft__tcb *weft__inject_pop(struct weft_runtime *rt,
				   struct weft__worker *w, unsigned max);

/* idle.c */
void weft__idle_init(struct weft_runtime *rt);
static inline void weft__idle_notify(struct weft_runtime *rt, bool fenced);
void weft__idle_notify_slow(struct weft_runtime *rt);
/* A task was put in the next slot of a worker that is running another:
 * make sure someone (a searcher or the watcher) will take it over if the
 * running one computes for long (idle.c, argued there). Inline: with a
 * watcher or a searcher, or nobody asleep, it is a load or two. */
static inline void weft__idle_watch(struct weft_runtime *rt);
bool weft__idle_try_search(struct weft__worker *w);
void weft__idle_stop_search(struct weft__worker *w);
void weft__idle_park(struct weft__worker *w);
void weft__idle_wake_all(struct weft_runtime *rt);

/* worker.c */
void weft__schedule(struct weft__worker *w, struct weft__tcb *t, bool yield);
/* Something now waits on time on w (a request, a timer): its next pick
 * looks at the ring and timers and measures the pick rate afresh. Owner
 * only. */
void weft__serve_soon(struct weft__worker *w);
void weft__schedule_remote(struct weft_runtime *rt, struct weft__tcb *t);
struct weft__worker *weft__switch_out(struct weft__worker *w, int action);
void weft__worker_loop(struct weft__worker *w);
void weft__after_switch(struct weft__worker *w);

/* task.c: an operation completed without suspending; counts against the
 * cooperative budget (may yield). No-op outside task context. */
void weft__coop_tick(void);

/* group.c: a group task has ended (called by task_finish()). */
void weft__group_task_end(struct weft__tcb *t);
/* Links t, not yet queued, into g (a slot was reserved). */
void weft__group_link(struct weft_group *g, struct weft__tcb *t);
/* task.c: spawn into a group (g may be NULL). */
int weft__spawn_in(weft_task **out, weft_fn fn, void *arg,
		   struct weft_group *g);

/* timer.c */
void weft__timer_init(struct weft_runtime *rt);
/* Files n to wake task at deadline (ns). False, with nothing filed, if the
 * deadline's tick has already been processed: it is due. */
bool weft__timer_add(struct weft_runtime *rt, struct weft__timer *n,
		     struct weft__tcb *task, uint64_t deadline);
/* Takes n out of the wheel; true if it had fired (or was firing: waits
 * until the firer is done with it). n is IDLE afterwards. */
bool weft__timer_cancel(struct weft_runtime *rt, struct weft__timer *n);
static inline bool weft__timer_fired(const struct weft__timer *n)
{
	return atomic_load_explicit(&n->state, memory_order_acquire) ==
	       WEFT__TM_FIRED;
}
/* Fires every timer due at `now`; returns how many. */
unsigned weft__timer_run(struct weft_runtime *rt, uint64_t now);
/* Fires what is due, reading the clock only if a timer is pending. */
unsigned weft__timer_poll(struct weft_runtime *rt);
/* weft__timer_poll() with the clock already read. */
unsigned weft__timer_poll_at(struct weft_runtime *rt, uint64_t now);
/* Keeper role for a parking worker: the ns deadline to sleep until, or 0
 * if it did not take the role (nobody needs it, or someone has it). */
uint64_t weft__timer_keep(struct weft__worker *w);
void weft__timer_unkeep(struct weft__worker *w);
/* For a wait loop, after weft__park_prepare(): -ECANCELED if a
 * cancellation is pending, -ETIMEDOUT if deadline (WEFT_NEVER: none) has
 * passed, else 0. Arms tm (IDLE, on the caller's stack) to wake self at the
 * deadline on first use and sets *armed; the caller cancels an armed tm
 * (weft__timer_cancel) before tm goes out of scope. */
int weft__wait_why(struct weft__tcb *self, uint64_t deadline,
		   struct weft__timer *tm, bool *armed);

/* pool.c: set up from the configuration (cannot fail; starts no thread),
 * and torn down: calls still queued complete with -ECANCELED, calls running
 * are waited for, every thread is joined. fini must run before the rings
 * are closed (a finishing call wakes its task, which may wake a worker) and
 * before task stacks and control blocks are freed (jobs live on task
 * stacks); it does nothing if init never ran. */
void weft__pool_init(struct weft_runtime *rt, const struct weft_config *c);
void weft__pool_fini(struct weft_runtime *rt);

/* runtime.c: building and tearing down a runtime. start() validates the
 * configuration, starts the workers (the caller becomes worker 0 if
 * caller_is_worker, and must then run its loop) and leaves them idle.
 * stop() stops and joins every worker (the caller's included: call it
 * after worker 0's loop returned); release() frees all but the handle
 * (control blocks stay readable between stop and release); free() frees
 * the handle. */
void *weft__worker_thread(void *arg);
int weft__runtime_start(struct weft_runtime **out,
			const struct weft_config *config,
			bool caller_is_worker);
void weft__runtime_stop(struct weft_runtime *rt);
void weft__runtime_release(struct weft_runtime *rt);
void weft__runtime_free(struct weft_runtime *rt);

/* lifecycle.c: event-loop control. */
/* Validates flags and grace, sets up the lock and claims the signals
 * (-EINVAL, -EBUSY); signals_start() installs the handler once the workers
 * run, signals_stop() restores what was there. fini undoes init. */
int weft__lifecycle_init(struct weft_runtime *rt,
			 const struct weft_config *config);
int weft__lifecycle_signals_start(struct weft_runtime *rt);
void weft__lifecycle_signals_stop(struct weft_runtime *rt);
void weft__lifecycle_fini(struct weft_runtime *rt);
/* weft_run(): spawns main on worker 0 as the run's main task. */
int weft__lifecycle_start_main(struct weft_runtime *rt, weft_fn fn,
			       void *arg, struct weft__tcb **out);
/* weft_run()'s main task after fn returned, in task context: cancels the
 * other tasks and waits up to the grace for them to end. */
void weft__lifecycle_drain(struct weft__tcb *self);
/* Spawn gate for threads outside rt: enter() returns 0 or -ESHUTDOWN;
 * a 0 must be matched by leave() once the task is queued. quiesce()
 * closes the gate and waits for the spawns inside it. */
int weft__lifecycle_enter(struct weft_runtime *rt);
void weft__lifecycle_leave(struct weft_runtime *rt);
void weft__lifecycle_quiesce(struct weft_runtime *rt);
/* An explicit runtime stopped by a fatal ring error, its last worker
 * thread out of its loop: tasks still alive are dropped (threads in
 * weft_join(), weft_runtime_run() among them, get -ECANCELED) and
 * weft_runtime_run_forever() returns. Called by that thread. */
void weft__lifecycle_fatal(struct weft_runtime *rt);

/* task.c: shutdown sweep. Requests cancellation of every live task of rt
 * but `except` (may be NULL) and wakes those not cancelled before; returns
 * how many are live. Any thread. */
/* Shutdown, after every worker has stopped, before the blocking pool is
 * shut down and rings, stacks and blocks are freed: every task still alive
 * is dropped. Its wait nodes are taken out of the objects the program
 * owns, and it ends with -ECANCELED for threads in weft_join(), waitsets
 * and task groups (runtime.c). */
void weft__task_drop_all(struct weft_runtime *rt);
unsigned weft__task_cancel_all(struct weft_runtime *rt,
			       struct weft__tcb *except);

/* idle.c's notify: the check that nobody searches and somebody sleeps is
 * inline (the common answer is "nothing to do"), the wake out of line. */
static inline void weft__idle_notify(struct weft_runtime *rt, bool fenced)
{
	unsigned s;

	if (fenced) {
		/* Pairs with the seq_cst RMW of the last searcher (see
		 * idle.c's file comment). */
		atomic_thread_fence(memory_order_seq_cst);
	}
	s = atomic_load_explicit(&rt->idle_state, memory_order_relaxed);
	if ((s & 0xffffu) != 0 || (s >> 16) >= rt->nworkers)
		return;
	weft__idle_notify_slow(rt);
}

/* idle.c's next-slot watch, inline (declared with the idle protocol):
 * nothing to do while a watcher exists, a worker searches (it will look at
 * next slots) or no worker sleeps. Relaxed: advisory, see idle.c. */
static inline void weft__idle_watch(struct weft_runtime *rt)
{
	unsigned s;

	if (atomic_load_explicit(&rt->watcher, memory_order_relaxed))
		return;
	s = atomic_load_explicit(&rt->idle_state, memory_order_relaxed);
	if ((s & 0xffffu) != 0 || (s >> 16) >= rt->nworkers)
		return;
	weft__idle_notify_slow(rt);
}

#endif /* WEFT_INTERNAL_H */
