/*
 * Waiting for tasks to end: weft_await and its timeout, gather, join from
 * threads outside the runtime, waitsets (as_completed, wait_any). Each
 * task keeps a list of waiter nodes under its wlock; its end hands every
 * node its result (weft__await_finish).
 */
#include <errno.h>
#include <string.h>

#include "await.h"
#include "futex.h"
#include "mem.h"
#include "spin.h"
#include "task.h"
#include "wait.h"
#include "worker.h"

/* await_one()'s own outcomes, apart from any task's (which are <= 0). */
#define WEFT__SELF_CANCELLED 1
#define WEFT__SELF_TIMEDOUT 2

struct weft_waitset;
static struct weft__tcb *waitset_ready(struct weft_waitset *ws, size_t i);

/*
 * The end of t, told to its awaiters (called once by the task's end, in
 * task.c): done (release, under wlock, so that waiter_add() either links
 * its node before it or sees it), then each node, its result and outcome
 * written before its done (release). dropped: a drop at shutdown, where
 * no task is woken.
 */
void weft__await_finish(struct weft__tcb *t, bool dropped)
{
	struct weft__waiter *list, *n;

	weft__spin_lock(&t->wlock);
	/* Release: awaiters that read done == 1 (acquire) see result and
	 * outcome. */
	atomic_store_explicit(&t->done, 1, memory_order_release);
	list = t->waiters;
	t->waiters = NULL;
	weft__spin_unlock(&t->wlock);

	for (; list; list = n) {
		struct weft__tcb *wt = list->task;
		n = list->next;
		/* After this store the node (on the waiter's stack) may be
		 * gone: read everything first. A thread's futex wake may then
		 * hit reused memory: a spurious wake-up, which its loop
		 * absorbs. */
		bool thread = !wt && !list->ws;
		if (list->ws)
			wt = waitset_ready(list->ws, list->index);
		list->result = t->result;
		list->outcome = t->outcome;
		atomic_store_explicit(&list->done, 1, memory_order_release);
		if (wt && !dropped)
			weft__task_wake(wt);
		else if (thread)
			weft__futex_wake(&list->done, 1);
	}
}

/* ---- await, gather ---------------------------------------------------- */

static int task_result(struct weft__tcb *t, void **result)
{
	if (result)
		*result = t->result;
	return t->outcome;
}

/* Takes node off t's waiter list. False if the ending task had already
 * taken it: it then sets node->done at once, which we wait for. */
static bool waiter_leave(struct weft__tcb *t, struct weft__waiter *node)
{
	struct weft__waiter **pp;
	bool unlinked = false;

	weft__spin_lock(&t->wlock);
	for (pp = &t->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == node) {
			*pp = node->next;
			unlinked = true;
			break;
		}
	}
	weft__spin_unlock(&t->wlock);
	if (!unlinked) {
		unsigned spin = 0;
		while (!atomic_load_explicit(&node->done, memory_order_acquire))
			weft__spin_backoff(&spin);
	}
	return unlinked;
}

/* Fills node (task: the waiting task, NULL for a thread; ws: a waitset or
 * NULL) and puts it on t's waiter list, unless t has ended already: then
 * returns false and links nothing. Under wlock, so task_finish() either
 * finds the node or we see done (its release store under the same lock). */
static bool waiter_add(struct weft__tcb *t, struct weft__waiter *node,
		       struct weft__tcb *task, struct weft_waitset *ws,
		       size_t index)
{
	node->task = task;
	node->ws = ws;
	node->index = index;
	atomic_init(&node->done, 0);
	weft__spin_lock(&t->wlock);
	if (atomic_load_explicit(&t->done, memory_order_acquire)) {
		weft__spin_unlock(&t->wlock);
		return false;
	}
	node->next = t->waiters;
	t->waiters = node;
	weft__spin_unlock(&t->wlock);
	return true;
}

bool weft__await_watch(struct weft__tcb *t, struct weft__waiter *node,
		       struct weft__tcb *self)
{
	return waiter_add(t, node, self, NULL, 0);
}

void weft__await_unwatch(struct weft__tcb *t, struct weft__waiter *node)
{
	waiter_leave(t, node);
}

/* An await in progress: the waiter node on t's list. */
struct await_wait {
	struct weft__wait wt;
	struct weft__waiter node;
	struct weft__tcb *t;
	void **result;
};

/* Acquire: pairs with weft__await_finish()'s release of node.done. */
static bool await_ready(struct weft__wait *wt)
{
	struct await_wait *u = (struct await_wait *)wt;

	if (!atomic_load_explicit(&u->node.done, memory_order_acquire))
		return false;
	wt->res = task_result(u->t, u->result);
	return true;
}

/* If the ending task already holds our node, the completion won the
 * race: report it. */
static bool await_give_up(struct weft__wait *wt, int why)
{
	struct await_wait *u = (struct await_wait *)wt;

	if (waiter_leave(u->t, &u->node))
		wt->res = why == -ECANCELED ? WEFT__SELF_CANCELLED
					    : WEFT__SELF_TIMEDOUT;
	else
		wt->res = task_result(u->t, u->result);
	return true;
}

/* Waits for t to end and returns its outcome, or WEFT__SELF_CANCELLED /
 * WEFT__SELF_TIMEDOUT (storing nothing) if the caller was cancelled or
 * reached `deadline` (ns, WEFT_NEVER for none) while waiting. */
static int await_one(struct weft__worker *w, struct weft__tcb *self,
		     struct weft__tcb *t, void **result, uint64_t deadline)
{
	struct await_wait u;

	if (atomic_load_explicit(&t->done, memory_order_acquire)) {
		weft__worker_budget_tick(w);
		return task_result(t, result);
	}
	if (!waiter_add(t, &u.node, self, NULL, 0))
		return task_result(t, result);
	u.t = t;
	u.result = result;
	weft__wait_init(&u.wt, w, deadline);
	weft__wait_for(&u.wt, WEFT__W_AWAIT, t, 0);
	return weft__wait(&u.wt, await_ready, await_give_up);
}

static inline int self_err(int err)
{
	if (err == WEFT__SELF_CANCELLED)
		return -ECANCELED;
	if (err == WEFT__SELF_TIMEDOUT)
		return -ETIMEDOUT;
	return err;
}

int weft_await(weft_task *h, void **result)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tcb *t;
	int err = 0;

	if (!w || !w->current)
		return -EPERM;
	t = weft__task_resolve(h, &err);
	if (!t)
		return err;
	if (t == w->current)
		return -EDEADLK;
	err = await_one(w, w->current, t, result, w->current->deadline);
	return self_err(err);
}

int weft_await_timeout(weft_task *h, void **result, uint64_t timeout_ns,
		       unsigned flags)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tcb *t, *self;
	int err = 0;

	if (!w || !w->current)
		return -EPERM;
	if (flags & ~WEFT_TIMEOUT_CANCEL)
		return -EINVAL;
	t = weft__task_resolve(h, &err);
	if (!t)
		return err;
	self = w->current;
	if (t == self)
		return -EDEADLK;
	err = await_one(w, self, t, result, weft__wait_deadline(timeout_ns));
	if (err == WEFT__SELF_TIMEDOUT && (flags & WEFT_TIMEOUT_CANCEL)) {
		/* asyncio.wait_for: cancel it and wait until it has ended,
		 * shielded, so that it has when we return. */
		atomic_store_explicit(&t->cancel, 1, memory_order_release);
		weft__task_wake(t);
		self->shield++;
		await_one(weft__worker_self(), self, t, NULL, WEFT_NEVER);
		self->shield--;
	}
	return self_err(err);
}

int weft_gather(weft_task *const *hs, size_t n, void **results)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tcb *self;
	int first = 0;
	size_t i;

	if (!w || !w->current)
		return -EPERM;
	if (n && !hs)
		return -EINVAL;
	self = w->current;
	for (i = 0; i < n; i++) {
		struct weft__tcb *t;
		int err;

		if (results)
			results[i] = NULL;
		t = weft__task_resolve(hs[i], &err);
		if (t && t == self)
			err = -EDEADLK, t = NULL;
		if (t) {
			err = await_one(weft__worker_self(), self, t,
					results ? &results[i] : NULL,
					self->deadline);
			if (err == WEFT__SELF_CANCELLED ||
			    err == WEFT__SELF_TIMEDOUT) {
				/* As documented: what was not collected is
				 * NULL. */
				while (results && ++i < n)
					results[i] = NULL;
				return self_err(err);
			}
		}
		if (err && !first)
			first = err;
	}
	return first;
}

int weft_join(weft_task *h, void **result)
{
	struct weft__waiter node;
	struct weft__tcb *t;
	int err = 0;

	if (weft__worker_self())
		return -EDEADLK;
	t = weft__task_resolve(h, &err);
	if (!t)
		return err;
	if (!waiter_add(t, &node, NULL, NULL, 0))
		return task_result(t, result);
	/* Acquire pairs with task_finish()'s release store of node.done,
	 * made after t->done, result and outcome. */
	while (!atomic_load_explicit(&node.done, memory_order_acquire))
		weft__futex_wait(&node.done, 0, WEFT_NEVER);
	if (result)
		*result = node.result;
	return node.outcome;
}

/* ---- waitsets: as_completed and wait(FIRST_COMPLETED) -----------------
 * One waiter node per task, on each task's waiter list. An ending task
 * that finds a waitset node appends the node's index to the set's ready
 * ring and reads the owner (the task now in weft_waitset_next(), or NULL),
 * both under the set's lock, then stores the node's done (release) and
 * wakes the owner. It touches neither node nor set after that store;
 * weft_waitset_destroy() takes back every node that is not done (or waits
 * for its done), so the set outlives every access to it. The owner
 * publishes itself under the same lock after finding the ring empty, so an
 * index appended later comes with a wake-up. */

struct weft_waitset {
	weft__spin lock;
	struct weft__tcb *owner;
	size_t n, nready, taken;
	size_t *ready;
	struct weft__tcb **tasks;
	struct weft__waiter *nodes;
};

static struct weft__tcb *waitset_ready(struct weft_waitset *ws, size_t i)
{
	struct weft__tcb *owner;

	weft__spin_lock(&ws->lock);
	ws->ready[ws->nready++] = i;
	owner = ws->owner;
	weft__spin_unlock(&ws->lock);
	return owner;
}

int weft_waitset_create(weft_waitset **out, weft_task *const *hs, size_t n)
{
	struct weft__worker *w = weft__worker_self();
	struct weft_waitset *ws;
	size_t i, npre = 0;
	int err = 0;

	if (!out || (n && !hs))
		return -EINVAL;
	if (!w || !w->current)
		return -EPERM;
	ws = weft__mem_calloc(1, sizeof(*ws));
	if (!ws)
		return -ENOMEM;
	ws->n = n;
	ws->ready = weft__mem_calloc(n ? n : 1, sizeof(*ws->ready));
	ws->tasks = weft__mem_calloc(n ? n : 1, sizeof(*ws->tasks));
	ws->nodes = weft__mem_calloc(n ? n : 1, sizeof(*ws->nodes));
	if (!ws->ready || !ws->tasks || !ws->nodes) {
		err = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < n; i++) {
		struct weft__tcb *t = weft__task_resolve(hs[i], &err);
		if (!t || t == w->current) {
			err = -EINVAL;
			goto fail;
		}
		ws->tasks[i] = t;
	}
	/* Tasks that had ended come first, in index order (as documented),
	 * before any that ends while the nodes are being linked. Such a
	 * task appends its index to the ring at once, and used to come out
	 * ahead of a task with a higher index that this loop found ended
	 * later (issue 15). Found-ended nodes are marked (ws NULL: they are
	 * not linked, so no ending task reads them) and put in front
	 * afterwards, under the lock, before anything can be taken. */
	for (i = 0; i < n; i++) {
		struct weft__waiter *nd = &ws->nodes[i];

		if (!waiter_add(ws->tasks[i], nd, NULL, ws, i)) {
			atomic_store_explicit(&nd->done, 1,
					      memory_order_relaxed);
			nd->ws = NULL;
			npre++;
		}
	}
	if (npre) {
		size_t k = 0;

		weft__spin_lock(&ws->lock);
		/* nready + npre <= n: each index is queued once. */
		memmove(ws->ready + npre, ws->ready,
			ws->nready * sizeof(*ws->ready));
		for (i = 0; i < n; i++)
			if (!ws->nodes[i].ws)
				ws->ready[k++] = i;
		ws->nready += npre;
		weft__spin_unlock(&ws->lock);
	}
	*out = ws;
	return 0;
fail:
	weft__mem_free(ws->ready);
	weft__mem_free(ws->tasks);
	weft__mem_free(ws->nodes);
	weft__mem_free(ws);
	return err;
}

struct waitset_wait {
	struct weft__wait wt;
	struct weft_waitset *ws;
};

/* Under the set's lock: an index is ready (the task's result is final
 * for us: the ending task stored it before it queued the index under
 * ws->lock, and we took that lock after it released it), or every task
 * has been reported (-ENOENT); else the caller is published as the owner
 * that the next ending task wakes. */
static bool waitset_ready_next(struct weft__wait *wt)
{
	struct weft_waitset *ws = ((struct waitset_wait *)wt)->ws;
	bool over = true;

	weft__spin_lock(&ws->lock);
	if (ws->taken < ws->nready) {
		wt->res = (int)ws->ready[ws->taken++];
		ws->owner = NULL;
	} else if (ws->taken == ws->n) {
		wt->res = -ENOENT;
		ws->owner = NULL;
	} else {
		ws->owner = wt->self;
		over = false;
	}
	weft__spin_unlock(&ws->lock);
	return over;
}

static bool waitset_give_up(struct weft__wait *wt, int why)
{
	struct weft_waitset *ws = ((struct waitset_wait *)wt)->ws;

	weft__spin_lock(&ws->lock);
	ws->owner = NULL;
	weft__spin_unlock(&ws->lock);
	wt->res = why;
	return true;
}

int weft_waitset_next(weft_waitset *ws, uint64_t timeout_ns)
{
	struct weft__worker *w = weft__worker_self();
	struct waitset_wait u;

	if (!ws)
		return -EINVAL;
	if (!w || !w->current)
		return -EPERM;
	u.ws = ws;
	weft__wait_init(&u.wt, w, weft__wait_deadline(timeout_ns));
	weft__wait_for(&u.wt, WEFT__W_WAITSET, ws, 0);
	return weft__wait(&u.wt, waitset_ready_next, waitset_give_up);
}

void weft_waitset_destroy(weft_waitset *ws)
{
	size_t i;

	if (!ws)
		return;
	for (i = 0; i < ws->n; i++)
		if (!atomic_load_explicit(&ws->nodes[i].done,
					  memory_order_acquire))
			waiter_leave(ws->tasks[i], &ws->nodes[i]);
	/* Every node is done or unlinked: an ending task stores done only
	 * after its last access to the set, so nobody can touch it now. */
	weft__mem_free(ws->ready);
	weft__mem_free(ws->tasks);
	weft__mem_free(ws->nodes);
	weft__mem_free(ws);
}

int weft_wait_any(weft_task *const *hs, size_t n, uint64_t timeout_ns)
{
	weft_waitset *ws;
	int err;

	if (!n)
		return -EINVAL;
	err = weft_waitset_create(&ws, hs, n);
	if (err < 0)
		return err;
	err = weft_waitset_next(ws, timeout_ns);
	weft_waitset_destroy(ws);
	return err;
}
