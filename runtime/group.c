/*
 * Task groups (asyncio.TaskGroup; also a wait group).
 *
 * State under the group's spinlock: the count of members that have not
 * ended (`live`, reserved before a spawn so that a wait cannot miss a task
 * being started), the list of those already linked (for cancel-all), the
 * first failure, whether the group refuses new tasks, and the queue of
 * tasks waiting for it to empty (wq.h protocol).
 *
 * A member task reaches weft__group_task_end() from task_finish(), on its
 * own stack, after its result and outcome are final. It unlinks itself,
 * records a failure (cancelling the others), and, if it was the last,
 * grants every waiter. Its unlock is its last access to the group: a
 * waiter released by the grant may destroy the group, and destroy takes
 * the lock once before freeing, so it waits out that unlock.
 *
 * Lifetime (wq.h): a granted waiter does not touch the group again (the
 * first failure travels in its node), so another waiter released by the
 * same grant may destroy it at once. A waiter whose wait fails (cancelled,
 * timed out) must still cancel the members and wait for them, but only if
 * the group has not emptied meanwhile: it decides that under the lock it
 * took to unlink its node (weft__wq_park_locked) and links its next node
 * in the same critical section. Once the group is empty it touches
 * nothing more, since the waiters released by the emptying may destroy the
 * group; while a member is left, none of them has been released, so the
 * group is there.
 */
#include <errno.h>

#include "base.h"
#include "group.h"
#include "mem.h"
#include "spin.h"
#include "task.h"
#include "wait.h"
#include "worker.h"
#include "wq.h"

struct weft_group {
	weft__spin lock;
	size_t live;
	int first_err;
	bool refuse;
	struct weft__tcb *members;
	struct weft__wq waiters;
	uint32_t tag; /* WEFT__LIVE while alive */
};

int weft_group_create(weft_group **out)
{
	weft_group *g;

	if (!out)
		return -EINVAL;
	g = weft__mem_calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->tag = WEFT__LIVE;
	*out = g;
	return 0;
}

/* Under the lock. Release pairs with cancel_pending()'s acquire. */
static void cancel_members(weft_group *g)
{
	struct weft__tcb *t;

	g->refuse = true;
	for (t = g->members; t; t = t->gnext) {
		atomic_store_explicit(&t->cancel, 1, memory_order_release);
		weft__task_wake(t);
	}
}

/* Under the lock; drops it. The last member out releases the waiters. */
static void member_gone(weft_group *g)
{
	if (--g->live)
		weft__spin_unlock(&g->lock);
	else
		weft__wq_grant_all(&g->lock, &g->waiters, g->first_err, NULL,
				   ~0u);
}

void weft__group_link(struct weft_group *g, struct weft__tcb *t)
{
	weft__spin_lock(&g->lock);
	t->group = g;
	t->gprev = NULL;
	t->gnext = g->members;
	if (g->members)
		g->members->gprev = t;
	g->members = t;
	/* The group failed between the reservation and now: the task is
	 * cancelled before it starts, so it never runs. Relaxed is enough:
	 * the task is not queued yet, and the queue push that publishes it
	 * (release) carries this store to whichever worker runs it. */
	if (g->refuse)
		atomic_store_explicit(&t->cancel, 1, memory_order_relaxed);
	weft__spin_unlock(&g->lock);
}

void weft__group_task_end(struct weft__tcb *t)
{
	weft_group *g = t->group;
	int err = 0;

	if (t->outcome == -ENOMEM)
		err = -ENOMEM;
	else if (t->outcome == 0 && weft_is_err(t->result))
		err = weft_ptr_err(t->result);
	weft__spin_lock(&g->lock);
	if (t->gprev)
		t->gprev->gnext = t->gnext;
	else
		g->members = t->gnext;
	if (t->gnext)
		t->gnext->gprev = t->gprev;
	t->gnext = t->gprev = NULL;
	t->group = NULL;
	if (err && !g->first_err) {
		g->first_err = err;
		cancel_members(g);
	}
	member_gone(g);
}

int weft_group_spawn(weft_group *g, weft_task **out, weft_fn fn, void *arg)
{
	return weft_group_spawn_opts_at(g, out, fn, arg, NULL, NULL);
}

int weft_group_spawn_at(weft_group *g, weft_task **out, weft_fn fn,
			void *arg, const char *site)
{
	return weft_group_spawn_opts_at(g, out, fn, arg, NULL, site);
}

int weft_group_spawn_opts(weft_group *g, weft_task **out, weft_fn fn,
			  void *arg, const struct weft_spawn_opts *opts)
{
	return weft_group_spawn_opts_at(g, out, fn, arg, opts, NULL);
}

int weft_group_spawn_opts_at(weft_group *g, weft_task **out, weft_fn fn,
			     void *arg, const struct weft_spawn_opts *opts,
			     const char *site)
{
	int err;

	if (!g || !fn || (opts && opts->runtime))
		return -EINVAL;
	if (out)
		*out = NULL;
	weft__spin_lock(&g->lock);
	if (g->refuse) {
		weft__spin_unlock(&g->lock);
		return -ECANCELED;
	}
	g->live++; /* reserved: a waiter cannot see 0 meanwhile */
	weft__spin_unlock(&g->lock);
	err = weft__task_spawn_in(out, fn, arg, opts, g, site);
	if (err < 0) {
		weft__spin_lock(&g->lock);
		member_gone(g);
	}
	return err;
}

void weft_group_cancel(weft_group *g)
{
	if (!g)
		return;
	weft__spin_lock(&g->lock);
	cancel_members(g);
	weft__spin_unlock(&g->lock);
}

size_t weft_group_size(weft_group *g)
{
	size_t n;

	if (!g)
		return 0;
	weft__spin_lock(&g->lock);
	n = g->live;
	weft__spin_unlock(&g->lock);
	return n;
}

int weft_group_wait(weft_group *g)
{
	struct weft__worker *w;
	struct weft__wnode n;
	int err;

	if (!g)
		return -EINVAL;
	weft__spin_lock(&g->lock);
	if (!g->live) {
		err = g->first_err;
		weft__spin_unlock(&g->lock);
		return err;
	}
	weft__wq_node_init(&n, NULL);
	weft__wq_push(&g->waiters, &n);
	weft__spin_unlock(&g->lock);
	weft__wq_why(&n, WEFT__W_GROUP, g);
	err = weft__wq_park_locked(&g->lock, &g->waiters, &n,
				   weft__wait_deadline(WEFT_NEVER));
	if (!err)
		return n.result; /* first_err, from the grant */
	/* Cancelled or timed out; the lock is held and n unlinked. The last
	 * member ended meanwhile: its grant skipped our leaving node and may
	 * have released others, who may be destroying the group now. */
	if (!g->live) {
		weft__spin_unlock(&g->lock);
		return err;
	}
	/* asyncio cancels the group's tasks and still waits for them,
	 * shielded, without deadline. Relinked before the unlock: the
	 * emptying grant cannot miss us. */
	cancel_members(g);
	weft__wq_node_init(&n, NULL);
	weft__wq_push(&g->waiters, &n);
	weft__spin_unlock(&g->lock);
	w = weft__worker_self();
	if (w && w->current)
		w->current->shield++;
	weft__wq_why(&n, WEFT__W_GROUP, g);
	weft__wq_park(&g->lock, &g->waiters, &n, WEFT_NEVER);
	w = weft__worker_self();
	if (w && w->current)
		w->current->shield--;
	return err;
}

void weft_group_destroy(weft_group *g)
{
	if (!g)
		return;
	weft__live_end(&g->tag, "weft_group_destroy(): not a live task group "
				     "(destroyed already?)");
	if (weft_group_size(g))
		weft_group_wait(g);
	/* A last member may still be between its grant and its unlock, a
	 * waiter between giving up and its unlink. */
	weft__wq_retire(&g->lock, &g->waiters, NULL,
			"weft_group_destroy() with waiters");
	weft__mem_free(g);
}
