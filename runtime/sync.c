/*
 * Coordination objects on wait queues (wq.h argues the protocol):
 * future, event, lock, semaphore, condition. Each object has one spinlock
 * that guards its state and its wait queues; nothing is held across a
 * suspension. Grants wake the waiter after the lock is dropped.
 *
 * Fairness: the lock and the semaphore hand ownership to the longest
 * waiter directly on release (the releaser never puts the permit back
 * while someone waits), so a newcomer's fast path cannot overtake a
 * waiter: invariant "waiters queued => held (lock) / no permit free (sem)",
 * counting waiters that can still be granted (a node whose waiter is
 * leaving stays linked until it unlinks itself, and is never granted).
 *
 * Lifetime (wq.h): a granted waiter reads only its node, and the
 * destroys wait for waiters that are leaving (weft__wq_retire), so an
 * object may be destroyed as soon as the call that granted its last
 * waiter has returned.
 */
#include <errno.h>

#include "base.h"
#include "mem.h"
#include "spin.h"
#include "task.h"
#include "wait.h"
#include "worker.h"
#include "wq.h"

/* ---- future ----------------------------------------------------------- */

struct weft_future {
	weft__spin lock;
	atomic_int done; /* release after value/err, under lock */
	int err;
	void *value;
	struct weft__wq waiters;
	uint32_t tag; /* WEFT__LIVE while alive */
};

int weft_future_create(weft_future **out)
{
	weft_future *f;

	if (!out)
		return -EINVAL;
	f = weft__mem_calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->tag = WEFT__LIVE;
	*out = f;
	return 0;
}

void weft_future_destroy(weft_future *f)
{
	if (!f)
		return;
	weft__live_end(&f->tag, "weft_future_destroy(): not a live future "
				     "(destroyed already?)");
	/* A setter may still be between its DONE store and its unlock, a
	 * waiter between giving up and its unlink. */
	weft__wq_retire(&f->lock, &f->waiters, NULL,
			"weft_future_destroy() with waiters");
	weft__mem_free(f);
}

static int future_complete(weft_future *f, void *value, int err)
{
	if (!f)
		return -EINVAL;
	weft__spin_lock(&f->lock);
	if (atomic_load_explicit(&f->done, memory_order_relaxed)) {
		weft__spin_unlock(&f->lock);
		return -EALREADY;
	}
	f->value = value;
	f->err = err;
	atomic_store_explicit(&f->done, 1, memory_order_release);
	/* The outcome travels in each node: a woken awaiter must not read
	 * f, which may be destroyed once this call has returned. */
	weft__wq_grant_all(&f->lock, &f->waiters, err, value, ~0u);
	return 0;
}

int weft_future_set(weft_future *f, void *value)
{
	return future_complete(f, value, 0);
}

int weft_future_fail(weft_future *f, int err)
{
	if (err >= 0)
		return -EINVAL;
	return future_complete(f, NULL, err);
}

static int future_result(weft_future *f, void **value)
{
	if (value)
		*value = f->err ? NULL : f->value;
	return f->err;
}

int weft_future_await_timeout(weft_future *f, void **value,
			      uint64_t timeout_ns)
{
	struct weft__wnode n;
	int err;

	if (!f)
		return -EINVAL;
	/* Acquire pairs with the release in future_complete(). */
	if (atomic_load_explicit(&f->done, memory_order_acquire)) {
		weft__task_coop_tick(); /* done without suspending: counts */
		return future_result(f, value);
	}
	weft__wq_node_init(&n, NULL);
	weft__spin_lock(&f->lock);
	if (atomic_load_explicit(&f->done, memory_order_relaxed)) {
		weft__spin_unlock(&f->lock);
		weft__task_coop_tick();
		return future_result(f, value);
	}
	weft__wq_why(&n, WEFT__W_FUTURE, f);
	err = weft__wq_wait(&f->lock, &f->waiters, &n,
			    weft__wait_deadline(timeout_ns));
	if (err)
		return err;
	/* From the node (its DONE, acquire in weft__wq_park, came after the
	 * setter wrote it), not from f: the setter may have destroyed f. */
	if (value)
		*value = n.result ? NULL : n.value;
	return n.result;
}

int weft_future_await(weft_future *f, void **value)
{
	return weft_future_await_timeout(f, value, WEFT_NEVER);
}

int weft_future_done(weft_future *f)
{
	return f && atomic_load_explicit(&f->done, memory_order_acquire);
}

/* ---- event ------------------------------------------------------------ */

struct weft_event {
	weft__spin lock;
	atomic_int set;
	struct weft__wq waiters;
	uint32_t tag; /* WEFT__LIVE while alive */
};

int weft_event_create(weft_event **out)
{
	weft_event *e;

	if (!out)
		return -EINVAL;
	e = weft__mem_calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->tag = WEFT__LIVE;
	*out = e;
	return 0;
}

void weft_event_destroy(weft_event *e)
{
	if (!e)
		return;
	weft__live_end(&e->tag, "weft_event_destroy(): not a live event "
				     "(destroyed already?)");
	weft__wq_retire(&e->lock, &e->waiters, NULL,
			"weft_event_destroy() with waiters");
	weft__mem_free(e);
}

void weft_event_set(weft_event *e)
{
	if (!e)
		return;
	weft__spin_lock(&e->lock);
	atomic_store_explicit(&e->set, 1, memory_order_release);
	weft__wq_grant_all(&e->lock, &e->waiters, 0, NULL, ~0u);
}

void weft_event_clear(weft_event *e)
{
	if (!e)
		return;
	weft__spin_lock(&e->lock);
	atomic_store_explicit(&e->set, 0, memory_order_relaxed);
	weft__spin_unlock(&e->lock);
}

int weft_event_is_set(weft_event *e)
{
	return e && atomic_load_explicit(&e->set, memory_order_acquire);
}

int weft_event_wait_timeout(weft_event *e, uint64_t timeout_ns)
{
	struct weft__wnode n;

	if (!e)
		return -EINVAL;
	if (atomic_load_explicit(&e->set, memory_order_acquire)) {
		weft__task_coop_tick(); /* done without suspending: counts */
		return 0;
	}
	weft__wq_node_init(&n, NULL);
	weft__spin_lock(&e->lock);
	if (atomic_load_explicit(&e->set, memory_order_relaxed)) {
		weft__spin_unlock(&e->lock);
		weft__task_coop_tick();
		return 0;
	}
	weft__wq_why(&n, WEFT__W_EVENT, e);
	return weft__wq_wait(&e->lock, &e->waiters, &n,
			     weft__wait_deadline(timeout_ns));
}

int weft_event_wait(weft_event *e)
{
	return weft_event_wait_timeout(e, WEFT_NEVER);
}

/* ---- lock ------------------------------------------------------------- */

struct weft_lock {
	weft__spin lock;
	bool held;
	struct weft__wq waiters;
	uint32_t tag; /* WEFT__LIVE while alive */
};

int weft_lock_create(weft_lock **out)
{
	weft_lock *l;

	if (!out)
		return -EINVAL;
	l = weft__mem_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->tag = WEFT__LIVE;
	*out = l;
	return 0;
}

void weft_lock_destroy(weft_lock *l)
{
	if (!l)
		return;
	weft__live_end(&l->tag, "weft_lock_destroy(): not a live lock "
				     "(destroyed already?)");
	weft__wq_retire(&l->lock, &l->waiters, NULL,
			"weft_lock_destroy() with waiters");
	weft__mem_free(l);
}

int weft_lock_try_acquire(weft_lock *l)
{
	int err = 0;

	if (!l)
		return -EINVAL;
	weft__spin_lock(&l->lock);
	if (l->held)
		err = -EBUSY;
	else
		l->held = true;
	weft__spin_unlock(&l->lock);
	return err;
}

/* deadline: absolute; shared with the condition's re-acquire. */
static int lock_acquire(weft_lock *l, uint64_t deadline)
{
	struct weft__wnode n;

	weft__spin_lock(&l->lock);
	if (!l->held) {
		/* Not held implies nobody waits (hand-off invariant). */
		l->held = true;
		weft__spin_unlock(&l->lock);
		return 0;
	}
	weft__wq_node_init(&n, NULL);
	/* A grant hands the lock over: held stays true throughout. */
	weft__wq_why(&n, WEFT__W_LOCK, l);
	return weft__wq_wait(&l->lock, &l->waiters, &n, deadline);
}

int weft_lock_acquire_timeout(weft_lock *l, uint64_t timeout_ns)
{
	if (!l)
		return -EINVAL;
	/* Every acquire counts against the cooperative budget, an
	 * uncontended one too; counted before taking the lock, so that the
	 * yield it may cause does not hold the lock over a round. (The
	 * condition's re-acquire does not count: its wait suspended.) */
	weft__task_coop_tick();
	return lock_acquire(l, weft__wait_deadline(timeout_ns));
}

int weft_lock_acquire(weft_lock *l)
{
	return weft_lock_acquire_timeout(l, WEFT_NEVER);
}

int weft_lock_release(weft_lock *l)
{
	struct weft__wnode *n;
	struct weft__wake t = { NULL, NULL };

	if (!l)
		return -EINVAL;
	weft__spin_lock(&l->lock);
	if (!l->held) {
		weft__spin_unlock(&l->lock);
		return -EPERM;
	}
	n = weft__wq_take(&l->waiters);
	if (n)
		t = weft__wq_grant(n, 0);
	else
		l->held = false;
	weft__spin_unlock(&l->lock);
	weft__wq_wake(t);
	return 0;
}

int weft_lock_locked(weft_lock *l)
{
	int held;

	if (!l)
		return 0;
	weft__spin_lock(&l->lock);
	held = l->held;
	weft__spin_unlock(&l->lock);
	return held;
}

/* ---- semaphore -------------------------------------------------------- */

struct weft_sem {
	weft__spin lock;
	unsigned value;
	unsigned initial;
	bool bounded;
	struct weft__wq waiters;
	uint32_t tag; /* WEFT__LIVE while alive */
};

int weft_sem_create(weft_sem **out, unsigned value, unsigned flags)
{
	weft_sem *s;

	if (!out || (flags & ~WEFT_SEM_BOUNDED))
		return -EINVAL;
	s = weft__mem_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->value = s->initial = value;
	s->bounded = flags & WEFT_SEM_BOUNDED;
	s->tag = WEFT__LIVE;
	*out = s;
	return 0;
}

void weft_sem_destroy(weft_sem *s)
{
	if (!s)
		return;
	weft__live_end(&s->tag, "weft_sem_destroy(): not a live semaphore "
				     "(destroyed already?)");
	weft__wq_retire(&s->lock, &s->waiters, NULL,
			"weft_sem_destroy() with waiters");
	weft__mem_free(s);
}

int weft_sem_try_acquire(weft_sem *s)
{
	int err = 0;

	if (!s)
		return -EINVAL;
	weft__spin_lock(&s->lock);
	if (s->value)
		s->value--;
	else
		err = -EAGAIN;
	weft__spin_unlock(&s->lock);
	return err;
}

int weft_sem_acquire_timeout(weft_sem *s, uint64_t timeout_ns)
{
	struct weft__wnode n;
	uint64_t d;

	if (!s)
		return -EINVAL;
	d = weft__wait_deadline(timeout_ns);
	/* Counts against the budget before taking a permit, as the lock. */
	weft__task_coop_tick();
	weft__spin_lock(&s->lock);
	if (s->value) {
		/* value > 0 implies nobody waits (hand-off invariant). */
		s->value--;
		weft__spin_unlock(&s->lock);
		return 0;
	}
	weft__wq_node_init(&n, NULL);
	weft__wq_why(&n, WEFT__W_SEM, s);
	return weft__wq_wait(&s->lock, &s->waiters, &n, d);
}

int weft_sem_acquire(weft_sem *s)
{
	return weft_sem_acquire_timeout(s, WEFT_NEVER);
}

int weft_sem_release(weft_sem *s)
{
	struct weft__wnode *n;
	struct weft__wake t = { NULL, NULL };

	if (!s)
		return -EINVAL;
	weft__spin_lock(&s->lock);
	n = weft__wq_take(&s->waiters);
	if (n) {
		t = weft__wq_grant(n, 0);
	} else if (s->bounded && s->value >= s->initial) {
		weft__spin_unlock(&s->lock);
		return -EOVERFLOW;
	} else if (s->value == ~0u) {
		weft__spin_unlock(&s->lock);
		return -EOVERFLOW;
	} else {
		s->value++;
	}
	weft__spin_unlock(&s->lock);
	weft__wq_wake(t);
	return 0;
}

unsigned weft_sem_value(weft_sem *s)
{
	unsigned v;

	if (!s)
		return 0;
	weft__spin_lock(&s->lock);
	v = s->value;
	weft__spin_unlock(&s->lock);
	return v;
}

/* ---- condition -------------------------------------------------------- */

struct weft_cond {
	weft__spin lock;
	struct weft__wq waiters;
	uint32_t tag; /* WEFT__LIVE while alive */
};

int weft_cond_create(weft_cond **out)
{
	weft_cond *c;

	if (!out)
		return -EINVAL;
	c = weft__mem_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->tag = WEFT__LIVE;
	*out = c;
	return 0;
}

void weft_cond_destroy(weft_cond *c)
{
	if (!c)
		return;
	weft__live_end(&c->tag, "weft_cond_destroy(): not a live condition "
				     "(destroyed already?)");
	weft__wq_retire(&c->lock, &c->waiters, NULL,
			"weft_cond_destroy() with waiters");
	weft__mem_free(c);
}

int weft_cond_wait_timeout(weft_cond *c, weft_lock *l, uint64_t timeout_ns)
{
	struct weft__worker *w;
	struct weft__wnode n;
	uint64_t d;
	int err;

	if (!c || !l)
		return -EINVAL;
	if (!weft_lock_locked(l))
		return -EPERM;
	d = weft__wait_deadline(timeout_ns);
	weft__wq_node_init(&n, NULL);
	/* Linked before the lock is released: a notify made by whoever
	 * takes the lock next finds us. */
	weft__spin_lock(&c->lock);
	weft__wq_push(&c->waiters, &n);
	weft__spin_unlock(&c->lock);
	weft_lock_release(l);
	weft__wq_why(&n, WEFT__W_COND, c);
	err = weft__wq_park(&c->lock, &c->waiters, &n, d);
	/* As asyncio: the lock is taken again whatever happened, and
	 * neither a cancellation nor the deadline may stop that. */
	w = weft__worker_self();
	if (w && w->current)
		w->current->shield++;
	lock_acquire(l, WEFT_NEVER);
	w = weft__worker_self();
	if (w && w->current)
		w->current->shield--;
	return err;
}

int weft_cond_wait(weft_cond *c, weft_lock *l)
{
	return weft_cond_wait_timeout(c, l, WEFT_NEVER);
}

unsigned weft_cond_notify(weft_cond *c, unsigned n)
{
	if (!c || !n)
		return 0;
	weft__spin_lock(&c->lock);
	return weft__wq_grant_all(&c->lock, &c->waiters, 0, NULL, n);
}

unsigned weft_cond_notify_all(weft_cond *c)
{
	return weft_cond_notify(c, ~0u);
}
