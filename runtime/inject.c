/*
 * The global inject queue: tasks spawned or woken from threads that are not
 * workers of the runtime, and the half of a local queue that overflowed.
 *
 * A FIFO linked through task->qnext under inject_lock. inject_len mirrors
 * the length so workers can skip an empty queue without the lock: it is
 * written under the lock and read without it, a hint only; the lock decides.
 * Workers take from it at least every 61 scheduling ticks (worker.c), so a
 * task here is not starved by two tasks that keep respawning each other on
 * one worker (Go's findRunnable, Tokio's global_queue_interval).
 */
#include "internal.h"
#include "lqueue.h"

void weft__inject_push(struct weft_runtime *rt, struct weft_task *head,
		       struct weft_task *tail, unsigned n)
{
	tail->qnext = NULL;
	weft__spin_lock(&rt->inject_lock);
	if (rt->inject_tail)
		rt->inject_tail->qnext = head;
	else
		rt->inject_head = head;
	rt->inject_tail = tail;
	atomic_store_explicit(&rt->inject_len,
			      atomic_load_explicit(&rt->inject_len,
						   memory_order_relaxed) + n,
			      memory_order_relaxed);
	weft__spin_unlock(&rt->inject_lock);
}

/*
 * Takes one task to run now and, when w is given, moves up to max - 1 more
 * into w's local queue (which has room for them: the caller passes at most
 * the free slots), a fair share so other workers get some too.
 */
struct weft_task *weft__inject_pop(struct weft_runtime *rt,
				   struct weft__worker *w, unsigned max)
{
	struct weft_task *t, *n;
	unsigned len, take;

	if (!atomic_load_explicit(&rt->inject_len, memory_order_relaxed))
		return NULL;
	weft__spin_lock(&rt->inject_lock);
	len = atomic_load_explicit(&rt->inject_len, memory_order_relaxed);
	if (!len) {
		weft__spin_unlock(&rt->inject_lock);
		return NULL;
	}
	take = len / rt->nworkers + 1;
	if (take > max)
		take = max;
	if (take > len)
		take = len;
	t = rt->inject_head;
	n = t->qnext;
	for (unsigned i = 1; i < take; i++) {
		struct weft_task *x = n;
		n = x->qnext;
		/* Room was checked by the caller; cannot fail. */
		weft__lq_push(&w->lq, x);
	}
	rt->inject_head = n;
	if (!n)
		rt->inject_tail = NULL;
	atomic_store_explicit(&rt->inject_len, len - take,
			      memory_order_relaxed);
	weft__spin_unlock(&rt->inject_lock);
	t->qnext = NULL;
	return t;
}
