/*
 * Which workers search, sleep and get woken (idle.c).
 */
#ifndef WEFT_IDLE_H
#define WEFT_IDLE_H

#include "runtime.h"

/* idle.c */
void weft__idle_init(struct weft_runtime *rt);
static inline void weft__idle_notify(struct weft_runtime *rt, bool fenced);
void weft__idle_notify_slow(struct weft_runtime *rt);
/* A task was put in the next slot of a worker that is running another:
 * make sure someone (a searcher or the watcher) will take it over if the
 * running one computes for long (idle.c, argued there). Inline: with a
 * watcher or a searcher, or nobody asleep, it is a load or two. */
static inline void weft__idle_watch(struct weft_runtime *rt);
bool weft__idle_try_search(struct weft__worker *w);
void weft__idle_stop_search(struct weft__worker *w);
void weft__idle_park(struct weft__worker *w);
void weft__idle_wake_all(struct weft_runtime *rt);

/* idle.c's notify: the check that nobody searches and somebody sleeps is
 * inline (the common answer is "nothing to do"), the wake out of line. */
static inline void weft__idle_notify(struct weft_runtime *rt, bool fenced)
{
	unsigned s;

	if (fenced) {
		/* Pairs with the seq_cst RMW of the last searcher (see
		 * idle.c's file comment). */
		atomic_thread_fence(memory_order_seq_cst);
	}
	s = atomic_load_explicit(&rt->idle_state, memory_order_relaxed);
	if ((s & 0xffffu) != 0 || (s >> 16) >= rt->nworkers)
		return;
	weft__idle_notify_slow(rt);
}

/* idle.c's next-slot watch, inline (declared with the idle protocol):
 * nothing to do while a watcher exists, a worker searches (it will look at
 * next slots) or no worker sleeps. Relaxed: advisory, see idle.c. */
static inline void weft__idle_watch(struct weft_runtime *rt)
{
	unsigned s;

	if (atomic_load_explicit(&rt->watcher, memory_order_relaxed))
		return;
	s = atomic_load_explicit(&rt->idle_state, memory_order_relaxed);
	if ((s & 0xffffu) != 0 || (s >> 16) >= rt->nworkers)
		return;
	weft__idle_notify_slow(rt);
}

#endif /* WEFT_IDLE_H */
