/*
 * Intrusive FIFO lists of tasks.
 */
#ifndef WEFT_TLIST_H
#define WEFT_TLIST_H

#include "task.h"

/* ---- task lists ---------------------------------------------------------
 * An intrusive FIFO of tasks linked through task->qnext, for the inject
 * queue and the pinned and remote lists. No locking of its own: each user
 * says what guards it. */
struct weft__tlist {
	struct weft__tcb *head, *tail;
};

/* Appends the chain first..last (already linked through qnext). */
static inline void weft__tlist_append(struct weft__tlist *l,
				      struct weft__tcb *first,
				      struct weft__tcb *last)
{
	last->qnext = NULL;
	if (l->tail)
		l->tail->qnext = first;
	else
		l->head = first;
	l->tail = last;
}

static inline struct weft__tcb *weft__tlist_pop(struct weft__tlist *l)
{
	struct weft__tcb *t = l->head;

	if (t) {
		l->head = t->qnext;
		if (!l->head)
			l->tail = NULL;
		t->qnext = NULL;
	}
	return t;
}

#endif /* WEFT_TLIST_H */
