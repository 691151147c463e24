/*
 * Event-loop control: explicit runtimes, stop, signals, shutdown (lifecycle.c).
 */
#ifndef WEFT_LIFECYCLE_H
#define WEFT_LIFECYCLE_H

#include "base.h"

struct weft__tcb;

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

#endif /* WEFT_LIFECYCLE_H */
