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
 * Node states (n->state):
 *   WAITING   linked; a granter may claim it, or its waiter (giving up);
 *   GRANTING  claimed by a granter, which holds the lock and has unlinked
 *             it; DONE follows before that granter drops the lock;
 *   DONE      granted: result (and value) are final; never linked again;
 *   LEAVING   claimed by its waiter, which is giving up (cancelled, timed
 *             out); stays linked until the waiter unlinks it itself.
 * WAITING is left by exactly one CAS: the granter's (-> GRANTING, in
 * weft__wq_take) or the waiter's (-> LEAVING, in give_up). Both are RMWs
 * on the same word, so one of them fails whatever the ordering; no data
 * travels with either (the granter reads the node's fields under the
 * lock the waiter linked it under; the waiter reads the grant only after
 * DONE), so they are relaxed.
 *
 * A waiter that cannot proceed links its node (WAITING) under the lock,
 * drops the lock and calls weft__wq_park(). The granter, holding the lock,
 * claims the node, unlinks it, writes its result and value, and stores
 * DONE (release). After that store the node may be gone (its waiter may
 * have returned), so the granter reads the task pointer first and wakes
 * the task after it (for a thread outside the runtime: a futex wake on the
 * state word, if the thread sleeps; a late wake is spurious and the
 * thread's loop absorbs it). The waiter's acquire load of DONE pairs with
 * that release, so it sees the result and value.
 *
 * Threads outside the runtime (issue 13) spin a short bounded while, then
 * sleep on the state word's futex. Before it sleeps the thread sets the
 * SLEEPER bit by CAS (WAITING -> WAITING|SLEEPER, or GRANTING ->
 * GRANTING|SLEEPER while a granter finishes), and futex_wait()s on that
 * value. A granter's claim keeps the bit (WAITING|SLEEPER ->
 * GRANTING|SLEEPER), and for a thread's node DONE is an exchange: an old
 * SLEEPER bit means the thread sleeps or is about to, and gets a futex
 * wake; without it no wake-up syscall is made (one per item, with the
 * thread's futex_wait, was most of a channel fed from the blocking pool:
 * bench/chan_feed). No wake-up is lost: the bit and DONE are RMWs on the
 * one word, so either the exchange reads the bit, or the thread's CAS
 * fails on the changed word and it reads DONE; and futex_wait() sleeps
 * only while the word holds the value with the bit. A task's node never
 * has the bit (a task is woken through its park word, wait.h), and its
 * DONE stays a plain release store. tests/model/thread_park.pml checks
 * it, and that a plain DONE store loses the wake.
 *
 * A waiter that gives up claims its node first (WAITING -> LEAVING). If
 * the claim fails the grant won: the waiter waits until DONE (the granter
 * is inside its critical section, a few instructions from the store: a
 * task spins, a thread spins and then sleeps as above) and reports the
 * grant (a lock acquired, a value received) WITHOUT touching the object
 * again; the cancellation stays pending for the next
 * suspension point, so nothing granted is ever lost. If the claim
 * succeeds, granters skip the node (weft__wq_take leaves it linked), and
 * the waiter takes the lock, unlinks it and reports its error.
 *
 * Lifetime (weft.h states the rule for the program): once a call that
 * granted a waiter has returned, that waiter never touches the object
 * again, so the object may be destroyed then. What makes it hold:
 *   - a granted waiter reads only its own node after DONE: every result a
 *     wait returns travels in the node (a future's value and error, a
 *     group's first failure), never read back from the object;
 *   - a granted waiter never takes the object's lock: its give-up path
 *     takes the lock only after winning the claim, i.e. only if it was
 *     not granted. Before the claim protocol, a waiter whose timeout fired
 *     as it was granted locked the object after the grant, in an object
 *     the granting side had already freed (issue 15);
 *   - a waiter that won its claim locks an object that is still there:
 *     its node is still linked (granters skip LEAVING nodes, and only the
 *     waiter unlinks it), and every destroy (weft__wq_retire) takes the
 *     lock and, while it finds a LEAVING node linked, drops it and spins:
 *     the leaver is between its claim and its unlink, where nothing
 *     suspends, so the wait is a few instructions long. A destroy that
 *     finds a WAITING node aborts: that waiter was neither granted nor
 *     leaving, i.e. the program destroyed an object that is waited on;
 *   - the granter itself touches the object until its unlock; a destroy
 *     takes the lock once more, which waits that unlock out.
 *
 * Tasks wait with weft__wait() (wait.h): the DONE check is its ready
 * hook, run after the park is prepared, so a grant made between the unlock
 * and the park is seen (the grant's wake moved park to NOTIFIED, which the
 * prepare overwrote; the check is what remains of it).
 *
 * Select (chan.c) adds one step: a node that belongs to a select carries
 * the select's shared `sel` word instead of using its own state for the
 * claim. A granter must win CAS(sel->winner, OPEN -> the node's case
 * index) before granting; the select gives up by winning CAS(winner,
 * OPEN -> GAVE_UP); if it loses, a grant is on its way and it waits for
 * that node's DONE. One word for all its nodes means one winner across
 * every channel of the select.
 *   - A granter that finds a select node it cannot claim leaves it linked
 *     and looks further: the select either gave up (it is unlinking, like
 *     a LEAVING node) or was granted on another channel; either way the
 *     select itself unlinks that node before it returns.
 *   - The granter that wins also unlinks, under the lock it holds, every
 *     other node of the same select on the same channel (a channel may
 *     appear in several cases). So once the grant's call has returned, no
 *     node of the select is linked in the channel that completed it, and
 *     the select never touches that channel again: it locks and unlinks
 *     only the other channels of its cases. Those are alive: the select's
 *     call is still in progress on them, and the program may destroy them
 *     only once it has returned (a destroy that finds a node of a select
 *     granted elsewhere aborts as a misuse; one that finds a select that
 *     gave up waits for it, as for LEAVING).
 *   - sel->nodes and sel->n let the granter find the siblings; each node's
 *     obj (its channel) and q (its queue) are written before the select
 *     drops the first lock and never change, and a sibling's `linked` is
 *     read only when it is in the granter's own channel, under its lock.
 */
#ifndef WEFT_WQ_H
#define WEFT_WQ_H

#include "base.h"
#include "futex.h"
#include "spin.h"
#include "task.h"

enum {
	WEFT__WN_WAITING = 0,
	WEFT__WN_DONE = 1,
	WEFT__WN_GRANTING = 2,
	WEFT__WN_LEAVING = 3,
	/* Or'd into WAITING or GRANTING: a thread outside the runtime
	 * sleeps (or is about to) on the word's futex. */
	WEFT__WN_SLEEPER = 4,
};

#define WEFT__SEL_OPEN (-1)
#define WEFT__SEL_GAVE_UP (-2)

struct weft__wnode;

struct weft__sel {
	/* WEFT__SEL_OPEN, a case index, or WEFT__SEL_GAVE_UP. */
	atomic_int winner;
	/* The select's nodes, one per case (for the sibling unlink). */
	struct weft__wnode *nodes;
	size_t n;
};

struct weft__wnode {
	struct weft__wnode *next, *prev;
	/* The waiting task, or NULL for a thread outside the runtime. */
	struct weft__tcb *task;
	atomic_int state; /* WEFT__WN_*; unused by select nodes until DONE */
	bool linked; /* under the owner's lock */
	int result;  /* written by the granter before DONE */
	void *value; /* in (a sender's value) or out (what was received) */
	struct weft__wq *q;    /* the queue it was linked into last */
	struct weft__sel *sel; /* NULL unless part of a select */
	const void *obj;       /* select: the case's channel; a broadcast
				  receive: its receiver (bcast.c) */
	int index;             /* the select case it stands for */
#ifdef WEFT__REGISTRY
	/* A task's wait, in the registry's words (weft__wq_why). */
	unsigned why;
	const void *what;
#endif
};

struct weft__wq {
	struct weft__wnode *head, *tail;
};

/* Fills n for the calling task or thread. */
static inline void weft__wq_node_init(struct weft__wnode *n, void *value)
{
	struct weft__worker *w = weft__worker_self();

	n->next = n->prev = NULL;
	n->task = (w && w->current) ? w->current : NULL;
	atomic_init(&n->state, WEFT__WN_WAITING);
	n->linked = false;
	n->result = 0;
	n->value = value;
	n->q = NULL;
	n->sel = NULL;
	n->obj = NULL;
	n->index = 0;
	/* why and what: set by every task's wait (weft__wq_why), read only
	 * for a task's (wq.c park). Builds with assertions store one that
	 * weft__wait() refuses (wait.h), to catch a wait that names none. */
#if defined(WEFT__REGISTRY) && \
	(!defined(NDEBUG) || defined(WEFT__ASAN) || defined(WEFT__TSAN))
	n->why = WEFT__W_COUNT;
#endif
}

/* What a task's wait on n is for (debug.h): kind and object. */
static inline void weft__wq_why(struct weft__wnode *n, unsigned kind,
				const void *obj)
{
#ifdef WEFT__REGISTRY
	n->why = kind;
	n->what = obj;
#else
	(void)n;
	(void)kind;
	(void)obj;
#endif
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
	n->q = q;
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

/* Under the lock of won's channel, after the CAS that made won the
 * select's winner: unlinks the select's other nodes on that channel, so
 * that the select never has to lock it again (see Select above). Siblings
 * on other channels are left to the select: their `linked` belongs to
 * those channels' locks and is not even read here. */
static inline void weft__wq_sel_take_siblings(const struct weft__wnode *won)
{
	struct weft__sel *sel = won->sel;

	for (size_t i = 0; i < sel->n; i++) {
		struct weft__wnode *m = &sel->nodes[i];

		if (m != won && m->obj == won->obj && m->linked)
			weft__wq_remove(m->q, m);
	}
}

/*
 * The first node of q that may be granted, claimed and unlinked; NULL if
 * none. Nodes whose waiter is leaving (LEAVING, or a select that gave up)
 * and nodes of a select granted elsewhere are skipped and left linked:
 * their owners unlink them (see the protocol above).
 */
static inline struct weft__wnode *weft__wq_take(struct weft__wq *q)
{
	struct weft__wnode *n;

	for (n = q->head; n; n = n->next) {
		if (!n->sel) {
			int s = WEFT__WN_WAITING;
			/* Relaxed: pairs with give_up()'s claim only in that
			 * one of the two CASes fails (see the protocol). A
			 * sleeping thread's bit stays (WAITING|SLEEPER ->
			 * GRANTING|SLEEPER) for weft__wq_grant(). */
			if (atomic_compare_exchange_strong_explicit(
				    &n->state, &s, WEFT__WN_GRANTING,
				    memory_order_relaxed, memory_order_relaxed) ||
			    (s == (WEFT__WN_WAITING | WEFT__WN_SLEEPER) &&
			     atomic_compare_exchange_strong_explicit(
				     &n->state, &s,
				     WEFT__WN_GRANTING | WEFT__WN_SLEEPER,
				     memory_order_relaxed,
				     memory_order_relaxed))) {
				weft__wq_remove(q, n);
				return n;
			}
			continue;
		}
		int open = WEFT__SEL_OPEN;
		/* acq_rel: the winning CAS orders the grant after every
		 * earlier claim attempt on the select; pairs with the
		 * select's own CAS (GAVE_UP) and its acquire load. */
		if (atomic_compare_exchange_strong_explicit(
			    &n->sel->winner, &open, n->index,
			    memory_order_acq_rel, memory_order_acquire)) {
			weft__wq_remove(q, n);
			weft__wq_sel_take_siblings(n);
			return n;
		}
	}
	return NULL;
}

/*
 * What a grant leaves to do once the object's lock is dropped: wake a task,
 * or a thread outside the runtime through the futex on its node's state.
 * No wake-up syscall is made under an object's lock (with more workers than
 * cores a holder in a syscall stalls every spinner). By the time of the
 * futex wake the thread may have returned and its node be gone: a wake on
 * an address nobody waits on any more is at worst a spurious wake-up of
 * whoever waits there now, which every futex waiter's loop absorbs (as in
 * task.c's task_finish).
 */
struct weft__wake {
	struct weft__tcb *task;
	atomic_int *word;
};

/*
 * Grants a node taken off its queue (under the owner's lock): stores the
 * result, then DONE. Returns what to wake once the lock is dropped
 * (weft__wq_wake).
 */
static inline struct weft__wake weft__wq_grant(struct weft__wnode *n,
						  int result)
{
	struct weft__wake k = { n->task, NULL };

	n->result = result;
	/* Release: pairs with the waiter's acquire load of DONE (park,
	 * give_up, select), which then reads result and value. A thread's
	 * node: an exchange, whose old SLEEPER bit asks for the futex wake
	 * (see the protocol). */
	if (k.task)
		atomic_store_explicit(&n->state, WEFT__WN_DONE,
				      memory_order_release);
	else if (atomic_exchange_explicit(&n->state, WEFT__WN_DONE,
					  memory_order_release) &
		 WEFT__WN_SLEEPER)
		k.word = &n->state;
	return k;
}

static inline void weft__wq_wake(struct weft__wake k)
{
	if (k.task)
		weft__task_wake(k.task);
	else if (k.word)
		weft__futex_wake(k.word, 1);
}

/*
 * Waits until n is DONE, the task is cancelled or deadline (ns on
 * weft_now(); WEFT_NEVER: none) passes. n was linked into q under lock by
 * the caller, which dropped the lock. Returns 0 when granted (the grant's
 * result is in n->result; the object is not touched after the grant), or
 * -ECANCELED / -ETIMEDOUT after taking n back. Threads outside the runtime
 * wait on a futex (no cancellation).
 */
int weft__wq_park(weft__spin *lock, struct weft__wq *q, struct weft__wnode *n,
		  uint64_t deadline);

/* Links n into q for the caller (lock held on entry, dropped here) and
 * parks on it: the usual way a call that cannot proceed waits. Returns
 * as weft__wq_park(). */
static inline int weft__wq_wait(weft__spin *lock, struct weft__wq *q,
				struct weft__wnode *n, uint64_t deadline)
{
	weft__wq_push(q, n);
	weft__spin_unlock(lock);
	return weft__wq_park(lock, q, n, deadline);
}

/* As weft__wq_park(), but a wait that fails returns with the lock held
 * (n unlinked), so that the caller can act on the object's state in the
 * same critical section (a task group's wait: nothing may be assumed
 * about the object once the lock is dropped). */
int weft__wq_park_locked(weft__spin *lock, struct weft__wq *q,
			 struct weft__wnode *n, uint64_t deadline);

/* Grants up to max nodes of q with result and value (broadcasts: future
 * set, event set, notify, a group emptied), first come first served. The
 * lock is held on entry and dropped here; the tasks are woken after it, in
 * grant order, at the back of their worker's queue when more than one was
 * granted (asyncio's order). Returns how many were granted. */
unsigned weft__wq_grant_all(weft__spin *lock, struct weft__wq *q, int result,
			    void *value, unsigned max);

/* For *_destroy(): takes lock, waits while a node of one of the nq queues
 * qs[] (NULL entries: none) belongs to a waiter that is leaving, aborts
 * with msg if any other node is linked (a waiter neither granted nor
 * leaving), and drops the lock. After it returns nobody touches the
 * object any more (see Lifetime). */
void weft__wq_retire_n(weft__spin *lock, struct weft__wq *const *qs,
		       size_t nq, const char *msg);

/* weft__wq_retire_n() for an object of one or two queues (q2 may be
 * NULL). */
static inline void weft__wq_retire(weft__spin *lock, struct weft__wq *q1,
				   struct weft__wq *q2, const char *msg)
{
	struct weft__wq *const qs[2] = { q1, q2 };

	weft__wq_retire_n(lock, qs, 2, msg);
}

#endif /* WEFT_WQ_H */
