/*
 * The runtime object; building and tearing down a runtime (runtime.c).
 */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <pthread.h>

#include "base.h"
#include "metrics.h"
#include "pool.h"
#include "spin.h"
#include "timer.h"
#include "tlist.h"
#include "worker.h"

/* ---- the runtime ------------------------------------------------------ */

struct weft__slab; /* stack.c bookkeeping */
struct weft__cb_slab; /* task.c */
struct weft__stall; /* stall.c */

struct weft__debug; /* debug.c */

struct weft_runtime {
	unsigned nworkers;
	struct weft__worker **workers;
	/* The dump signal's and the deadlock check's thread (debug.c), or
	 * NULL; set at the start and cleared at the stop. */
	struct weft__debug *dbg;
	size_t stack_size;   /* default usable stack size, page multiple */
	unsigned stack_cache; /* per-worker hot stacks */
	int wake_mode;
	int reactor;         /* WEFT_REACTOR_URING or _EPOLL (runtime.c) */
	struct weft_runtime *ep_next; /* epoll runtimes' list (epoll.c) */
	bool ep_listed;

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

	/* Task control block pool (task.c): every slab (cb_slabs, never
	 * unlinked before the end), and under cb_lock the list of free
	 * blocks, the all-free slabs with pages and those without. Off
	 * the line of `stopping`, which every worker loop reads. */
	_Alignas(WEFT__CACHELINE) weft__spin cb_lock;
	struct weft__cb_slab *cb_slabs;
	struct weft__tcb *cb_free;
	struct weft__cb_slab *cb_list[2];
	unsigned cb_list_n[2];
	/* Read by every worker's periodic pick: on a line of their own, not
	 * the lock's (written on every take and give). */
	_Alignas(WEFT__CACHELINE) atomic_uint cb_empty_hint; /* cb_list_n[
				     * all free], without lock */
	/* Armed trim moment (ns), 0: none; written under cb_lock, read
	 * without it as a hint (relaxed). */
	_Atomic uint64_t cb_trim_at;
	atomic_uint cb_trim_gen;    /* bumped: workers give back cold caches */

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

	/* Timer service (timer.c; the wheels are the workers'): the keeper,
	 * the parked worker that sleeps no longer than the earliest timer of
	 * every wheel, and until when it sleeps. */
	_Alignas(WEFT__CACHELINE) _Atomic(struct weft__worker *) keeper;
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
	/* weft_dump() / weft_tasks_foreach() calls reading the workers and
	 * blocks, and whether those are going (release began): under
	 * life_lock (debug.c). */
	unsigned dbg_readers;
	bool dbg_gone;
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

	/* Metrics counted off the workers (metrics.h), and when the
	 * runtime started (weft_now(); read-only after start). */
	_Alignas(WEFT__CACHELINE) struct weft__rmetrics metrics;
	uint64_t metrics_start;
	/* The stall watchdog (stall.c), or NULL; its stall_ms (0: off), known
	 * before the workers start (read-only after). */
	struct weft__stall *stall;
	unsigned stall_ms;
};

/* runtime.c: building and tearing down a runtime. start() validates the
 * configuration, starts the workers (the caller becomes worker 0 if
 * caller_is_worker, and must then run its loop) and leaves them idle.
 * stop() stops and joins every worker (the caller's included: call it
 * after worker 0's loop returned); release() frees all but the handle
 * (control blocks stay readable between stop and release); free() frees
 * the handle. */
void *weft__runtime_thread(void *arg);
int weft__runtime_start(struct weft_runtime **out,
			const struct weft_config *config,
			bool caller_is_worker);
void weft__runtime_stop(struct weft_runtime *rt);
void weft__runtime_release(struct weft_runtime *rt);
void weft__runtime_free(struct weft_runtime *rt);

#endif /* WEFT_RUNTIME_H */
