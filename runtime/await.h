/*
 * Waiting for tasks to end (await.c).
 */
#ifndef WEFT_AWAIT_H
#define WEFT_AWAIT_H

#include "base.h"

#include <stdatomic.h>
#include <stddef.h>

struct weft__tcb;
struct weft_waitset;

/* One task waiting in weft_await(), or a thread in weft_join() (task
 * NULL: woken through the futex on `done`); lives on the waiter's stack. */
struct weft__waiter {
	struct weft__waiter *next;
	struct weft__tcb *task;
	/* A waitset's node: the ending task reports index to ws instead of
	 * waking `task` (await.c's weft_waitset). */
	struct weft_waitset *ws;
	size_t index;
	/* Set (release) by the ending task after it unlinked the node; the
	 * waiter must not return before it sees it, since the node is on its
	 * stack. */
	atomic_int done;
	/* The task's result and outcome, written before done: a thread in
	 * weft_join() reads them here, since the runtime (and the block)
	 * may be gone once it wakes (a task dropped at shutdown). */
	void *result;
	int outcome;
};

/* Watching t's end without waiting (weft_select's task cases): node
 * joins t's waiter list, and t's end wakes self (after node.done, release).
 * False if t has ended already (nothing linked). unwatch takes the node
 * off the list, or waits for the end's done if the ending task took it
 * first: the node may go once it returns. */
bool weft__await_watch(struct weft__tcb *t, struct weft__waiter *node,
		       struct weft__tcb *self);
void weft__await_unwatch(struct weft__tcb *t, struct weft__waiter *node);

/* The end of t, told to every waiter on its list (await, join,
 * waitsets); called once, by the ending task's last step (task.c).
 * dropped: a drop at shutdown, which wakes no task. */
void weft__await_finish(struct weft__tcb *t, bool dropped);

#endif /* WEFT_AWAIT_H */
