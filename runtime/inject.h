/*
 * The global inject queue (inject.c).
 */
#ifndef WEFT_INJECT_H
#define WEFT_INJECT_H

#include "base.h"

struct weft__tcb;
struct weft__worker;

/* inject.c */
void weft__inject_push(struct weft_runtime *rt, struct weft__tcb *head,
		       struct weft__tcb *tail, unsigned n);
struct weft__tcb *weft__inject_pop(struct weft_runtime *rt,
				   struct weft__worker *w, unsigned max);

#endif /* WEFT_INJECT_H */
