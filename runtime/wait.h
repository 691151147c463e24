/*
 * Wait queues: the one waiting mechanism under every coordination object
 * (sync.c, chan.c, group.c). Internal; included by those files only.
 *
 * Protocol
 * --------
 * A wait queue is a FIFO of nodes, each on its waiter's stack, guarded by
 * the lock of the object that owns the queue. A node is linked and unlinked
 * only under that lock.
 *
 * A waiter that cannot proceed links its node (state WAITING) under the
 * lock, drops the lock and calls weft__wq_park(). Whoever can satisfy it
 * (the granter), holding the lock, unlinks the node, writes the node's
 * result and value, and stores state DONE (release). After that store the
 * node may be gone (its waiter may have returned), so the granter reads the
 * task pointer first and wakes the task after it (for a thread outside the
 * runtime: a futex wake on the state word; a late wake is spurious and the
 * thread's loop absorbs it). The waiter's acquire load of DONE pairs with
 * that release, so it sees the result and value.
 *
 * A waiter that gives up (cancelled, timed out) takes the lock and, if the
 * node is still WAITING, unlinks it itself: from then on no granter can
 * find it. If it is DONE the grant won the race and the waiter reports the
 * grant (a lock acquired, a value received); the cancellation stays pending
 * for the next suspension point, so nothing granted is ever lost.
 *
 * Tasks follow the park protocol of task.c: the DONE check comes after
 * weft__park_prepare(), so a grant made between the unlock and the park is
 * seen (the grant's wake moved park to NOTIFIED, which the prepare
 * overwrote; the check is what remains of it).
 *
 * Select (chan.c) adds one step: a node that belongs to a select carries
 * the select's shared `sel` word. A granter must win CAS(sel->winner,
 * -1 -> the node's case index) before granting; if it loses, the node is
 * stale (another case won, or the select gave up) and the granter unlinks
 * it and looks at the next node. A select that gives up must itself win
 * CAS(winner, -1 -> WEFT__SEL_GAVE_UP); if it loses, a grant is on its way
 * and it waits for that node's DONE.
 */
#ifndef WEFT_WAIT_H
#define WEFT_WAIT_H

#include "internal.h"

enum { WEFT__WN_WAITING = 0, WEFT__WN_DONE = 1 };

#define WEFT__SEL_OPEN (-1)
#define WEFT__SEL_GAVE_UP (-2)

struct weft__sel {
	/* WEFT__SEL_OPEN, a case index, or WEFT__SEL_GAVE_UP. */
	atomic_int winner;
};

struct weft__wnode {
	struct weft__wnode *next, *prev;
	/* The waiting task, or NULL for a thread outside the runtime. */
	struct weft_task *task;
	atomic_int state;
	bool linked; /* under the owner's lock */
	int result;  /* written by the granter before DONE */
	void *value; /* in (a sender's value) or out (what was received) */
	struct weft__sel *sel; /* NULL unless part of a select */
	int index;             /* the select case it stands for */
};

struct weft__wq {
	struct weft__wnode *head, *tail;
};

/* Fills n for the calling task or thread. */
static inline void weft__wnode_init(struct weft__wnode *n, void *value)
{
	struct weft__worker *w = weft__worker_self();

	n->next = n->prev = NULL;
	n->task = (w && w->current) ? w->current : NULL;
	atomic_init(&n->state, WEFT__WN_WAITING);
	n->linked = false;
	n->result = 0;
	n->value = value;
	n->sel = NULL;
	n->index = 0;
}

static inline void weft__wq_push(struct weft__wq *q, struct weft__wnode *n)
{
	n->next = NULL;
	n->prev = q->tail;
	if (q->tail)
		q->tail->next = n;
	else
		q->head = n;
	q->tail = n;
	n->linked = true;
}

static inline void weft__wq_remove(struct weft__wq *q, struct weft__wnode *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		q->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		q->tail = n->prev;
	n->next = n->prev = NULL;
	n->linked = false;
}

/*
 * The first node of q that may be granted, unlinked; NULL if none. Nodes
 * of a select are claimed first (CAS on their sel word); those whose
 * select went another way are unlinked and skipped.
 */
static inline struct weft__wnode *weft__wq_take(struct weft__wq *q)
{
	struct weft__wnode *n;

	while ((n = q->head)) {
		weft__wq_remove(q, n);
		if (!n->sel)
			return n;
		int open = WEFT__SEL_OPEN;
		/* acq_rel: the winning CAS orders the grant after every
		 * earlier claim attempt on the select. */
		if (atomic_compare_exchange_strong_explicit(
			    &n->sel->winner, &open, n->index,
			    memory_order_acq_rel, memory_order_acquire))
			return n;
	}
	return NULL;
}

/* True if q holds a node that weft__wq_take() would return (select nodes
 * still open count; the check is advisory for try_* fast paths). */
static inline bool weft__wq_any(const struct weft__wq *q)
{
	const struct weft__wnode *n;

	for (n = q->head; n; n = n->next)
		if (!n->sel || atomic_load_explicit(&n->sel->winner,
						    memory_order_acquire) ==
				       WEFT__SEL_OPEN)
			return true;
	return false;
}

/*
 * Grants a node taken off its queue (under the owner's lock): stores the
 * result, then DONE. Returns the task to wake once the lock is dropped
 * (weft__task_wake), or NULL when a thread was woken here.
 */
static inline struct weft_task *weft__wnode_grant(struct weft__wnode *n,
						  int result)
{
	struct weft_task *t = n->task;

	n->result = result;
	atomic_store_explicit(&n->state, WEFT__WN_DONE, memory_order_release);
	if (!t)
		weft__futex_wake(&n->state, 1);
	return t;
}

static inline void weft__wake_opt(struct weft_task *t)
{
	if (t)
		weft__task_wake(t);
}

/*
 * Waits until n is DONE, the task is cancelled or deadline (ns on
 * weft_now(); WEFT_NEVER: none) passes. n was linked into q under lock by
 * the caller, which dropped the lock. Returns 0 when granted (the grant's
 * result is in n->result), -ECANCELED or -ETIMEDOUT after taking n back.
 * Threads outside the runtime wait on a futex (no cancellation).
 */
int weft__wq_park(weft__spin *lock, struct weft__wq *q, struct weft__wnode *n,
		  uint64_t deadline);

/* Grants up to max nodes of q with result (broadcasts: future set, event
 * set, notify, a group emptied). The lock is held on entry and dropped
 * here; the tasks are woken after it. Returns how many were granted. */
unsigned weft__wq_grant_all(weft__spin *lock, struct weft__wq *q, int result,
			    unsigned max);

/* Deadline for a call with its own relative timeout, combined with the
 * calling task's deadline scope. */
uint64_t weft__wait_deadline(uint64_t timeout_ns);

#endif /* WEFT_WAIT_H */
