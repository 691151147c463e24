/*
 * Stall reports (stall.c): a watchdog thread that notices a task running
 * too long without suspending and has its worker print where it is.
 */
#ifndef WEFT_STALL_H
#define WEFT_STALL_H

#include "base.h"

/* The signal the watchdog sends a worker (a dump signal may not be it:
 * debug.c). */
#define WEFT__STALL_SIG (SIGRTMIN + 4)

/* Frames kept of a stalled task's stack. */
#define WEFT__STALL_FRAMES 48

/* A worker's answer to the watchdog's signal, on the worker (filled by
 * the signal handler on the worker's own thread, read by the watchdog).
 * state: IDLE -> ASKED (watchdog, release) -> FILLING (handler's CAS) ->
 * DONE (handler, release) -> IDLE (watchdog); or ASKED -> IDLE by the
 * watchdog's CAS when no answer came in time (then a late handler finds
 * IDLE and writes nothing). The fields below state are written only
 * between FILLING and DONE and read only after DONE (acquire).
 * tests/model/stall_slot.pml checks it, and that dropping either CAS
 * breaks it. */
struct weft__stall_slot {
	atomic_int state;
	int nframes;           /* -1: no task was running */
	unsigned long ticks;   /* the worker's switch count at the signal */
	unsigned pins;         /* pinned tasks ready on the worker */
	char name[32];
	/* The task's spawn site (a string literal of the program's, see
	 * task.h), or NULL: built without the registry, or not recorded. */
	const char *site;
	void *frames[WEFT__STALL_FRAMES];
};

/* The stall_ms the configuration (or WEFT_STALL_MS) asks for; 0: off.
 * For rt->stall_ms, before the workers start. */
unsigned weft__stall_ms(const struct weft_config *c);
/* On each worker's thread as it starts, and as it stops: with reports on,
 * the stall signal is unblocked there (a program that blocks every
 * signal before it starts weft, for sigwait or a signalfd, passes that
 * mask on to the workers), and blocked again at the stop if it was. */
void weft__stall_thread_init(struct weft__worker *w);
void weft__stall_thread_fini(struct weft__worker *w);
/* Starts the watchdog of rt if rt->stall_ms asks for one; after the
 * workers started. 0 or -errno (thread creation). */
int weft__stall_start(struct weft_runtime *rt, const struct weft_config *c);
/* Stops and joins it (nothing if none); before the workers stop. */
void weft__stall_stop(struct weft_runtime *rt);

#endif /* WEFT_STALL_H */
