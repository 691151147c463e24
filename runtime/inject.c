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
#include "inject.h"
#include "lq.h"
#include "runtime.h"
#include "spin.h"
#include "task.h"
#include "tlist.h"
#include "worker.h"

void weft__inject_push(struct weft_runtime *rt, struct weft__tcb *head,
		       struct weft__tcb *tail, unsigned n)
{
	weft__spin_lock(&rt->inject_lock);
	weft__tlist_append(&rt->inject, head, tail);
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
struct weft__tcb *weft__inject_pop(struct weft_runtime *rt,
				   struct weft__worker *w, unsigned max)
{
	struct weft__tcb *t;
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
	t = weft__tlist_pop(&rt->inject);
	/* Room was checked by the caller; the pushes cannot fail. */
	for (unsigned i = 1; i < take; i++)
		weft__lq_push(&w->lq, weft__tlist_pop(&rt->inject));
	atomic_store_explicit(&rt->inject_len, len - take,
			      memory_order_relaxed);
	weft__spin_unlock(&rt->inject_lock);
	return t;
}
