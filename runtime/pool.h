/*
 * The blocking pool (pool.c).
 */
#ifndef WEFT_POOL_H
#define WEFT_POOL_H

#include <pthread.h>

#include "base.h"

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

/* pool.c: set up from the configuration (cannot fail; starts no thread),
 * and torn down: calls still queued complete with -ECANCELED, calls running
 * are waited for, every thread is joined. fini must run before the rings
 * are closed (a finishing call wakes its task, which may wake a worker) and
 * before task stacks and control blocks are freed (jobs live on task
 * stacks); it does nothing if init never ran. */
void weft__pool_init(struct weft_runtime *rt, const struct weft_config *c);
void weft__pool_fini(struct weft_runtime *rt);
/* The runtime whose blocking pool the calling thread belongs to, or NULL. */
struct weft_runtime *weft__pool_owner(void);
/* Threads of rt's blocking pool now (under its lock). */
unsigned weft__pool_threads(struct weft_runtime *rt);

#endif /* WEFT_POOL_H */
