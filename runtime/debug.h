/*
 * The task registry's cheap half (debug.c has the rest: the walk, the
 * dump, the dump signal and the deadlock check).
 *
 * Each control block carries, while the task waits, what it waits on: a
 * kind (enum below, named in weft__debug_wait_names[] so that a debugger
 * can print it), the object (a channel, a lock, an awaited task's block)
 * or a number (an fd with the io_uring opcode, a deadline) and when the
 * wait began, in its slab's side table (task.h struct weft__task_side);
 * and in the block itself the spawn site (a string literal from the
 * weft_spawn() macros of weft.h) and the spawn moment. The block stays
 * 224 bytes (task.h says why).
 *
 * No clock is read for any of it: rdtsc cost 20-40 ns on the test machine
 * (a VM), clock_gettime more, and a switch costs 13. Moments come from
 * the worker's coarse clock (weft__worker dbg_now, weft_now() ns), read
 * at each serve() (about every 50 us of run time while anything waits on
 * I/O or a timer), after each idle park, and every 64th periodic pick
 * otherwise (about every 4000 switches): a
 * wait's start is late by at most that much, which a dump that reports
 * waits in ms, seconds and minutes does not mind. Time run per task is
 * not kept: it needs a clock read per switch.
 *
 * Who writes what: only the task itself writes its wait fields (the call
 * that waits names them, weft__wait() stores them), and only its spawner
 * writes the spawn fields, before the task is published. A reader on
 * another thread (weft_tasks_foreach, weft_dump) reads the wait fields
 * with relaxed atomic loads and the others with debug.c's snapshot copy,
 * which re-checks the block's handle afterwards (a block reused during the
 * copy is skipped). The wait word holds the kind and the start moment
 * together, so those two are always consistent; object and number may
 * belong to the task's next wait if it moved on during the read, which a
 * dump of a running program shows as it is (a debugging aid, not a
 * protocol: nothing is decided on these fields but the deadlock check,
 * which debug.c argues).
 *
 * WEFT_TASK_REGISTRY=OFF (CMake) compiles all of it out (WEFT__REGISTRY
 * undefined): the fields go, the setters are empty, and weft_dump() /
 * weft_tasks_foreach() return -ENOSYS.
 */
#ifndef WEFT_DEBUG_H
#define WEFT_DEBUG_H

#include "base.h"

/* What a parked task waits on (weft__tcb wait word, low 8 bits). The
 * numbers are those of the public WEFT_WAIT_* (weft.h). */
enum weft__debug_wait_kind {
	WEFT__W_NONE = 0,      /* not waiting (running or runnable) */
	WEFT__W_SLEEP,         /* arg: deadline (weft_now() ns) */
	WEFT__W_IO,            /* arg: opcode << 32 | fd (io_uring) */
	WEFT__W_IO_EPOLL,      /* arg: events << 32 | fd (epoll) */
	WEFT__W_STREAM,        /* arg: fd (a receive stream) */
	WEFT__W_CHAN_SEND,     /* obj: the channel */
	WEFT__W_CHAN_RECV,     /* obj: the channel */
	WEFT__W_CHAN_JOIN,     /* obj: the channel */
	WEFT__W_SELECT,        /* arg: its descriptor cases (0: none) */
	WEFT__W_LOCK,          /* obj: the lock */
	WEFT__W_SEM,           /* obj: the semaphore */
	WEFT__W_COND,          /* obj: the condition */
	WEFT__W_EVENT,         /* obj: the event */
	WEFT__W_FUTURE,        /* obj: the future */
	WEFT__W_AWAIT,         /* obj: the awaited task's block */
	WEFT__W_WAITSET,       /* obj: the waitset */
	WEFT__W_GROUP,         /* obj: the group */
	WEFT__W_BLOCKING,      /* weft_run_blocking(); obj: the function */
	WEFT__W_BCAST,         /* obj: the broadcast receiver */
	WEFT__W_OTHER,         /* a wait with no reason recorded */
	WEFT__W_COUNT
};

/* "sleep", "io", ... indexed by kind; readable by a debugger. */
extern const char *const weft__debug_wait_names[WEFT__W_COUNT];

/* Bits of the wait word (weft__tcb wait_word): the start moment (ns,
 * shifted: its top bits are lost, and come back from the clock at the
 * read) above a has-deadline bit above the kind. */
#define WEFT__W_SHIFT 9
/* weft__tcb spawn_ms: the spawn moment in units of 2^20 ns. */
#define WEFT__SPAWN_SHIFT 20
#define WEFT__W_KIND_MASK 0xffu
#define WEFT__W_TIMED 0x100u



struct weft_runtime;
/* -EINVAL for a bad weft_config.dump_signal (or, built without the
 * registry, any dump signal or WEFT_RUN_ABORT_ON_DEADLOCK). */
int weft__debug_signal_check(const struct weft_config *c);
/* The dump signal and the deadlock check, if config asks for them: a
 * thread and a signal handler (runtime.c, at the start and the stop). */
int weft__debug_start(struct weft_runtime *rt, const struct weft_config *c);
void weft__debug_stop(struct weft_runtime *rt);
/* Before the workers and blocks are freed (weft__runtime_release): later
 * weft_dump() / weft_tasks_foreach() calls get -ESHUTDOWN, and those in
 * flight on other threads are waited for. */
void weft__debug_release(struct weft_runtime *rt);

#endif /* WEFT_DEBUG_H */
