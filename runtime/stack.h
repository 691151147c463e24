/*
 * Task stacks: slabs, guard pages, caches, overflow reports (stack.c).
 */
#ifndef WEFT_STACK_H
#define WEFT_STACK_H

#include "base.h"

struct weft__worker;

/* stack.c */
struct weft__stack {
	char *lo;              /* lowest usable byte */
	size_t size;           /* usable bytes */
	struct weft__stack *next;
	bool cold;             /* pages given back to the kernel */
	bool arena;            /* from the shared arena (else own mapping) */
	unsigned vg_id;        /* valgrind stack id */
};
int weft__stack_init(struct weft_runtime *rt);
void weft__stack_fini(struct weft_runtime *rt);
struct weft__stack *weft__stack_get(struct weft__worker *w, size_t size);
void weft__stack_put(struct weft__worker *w, struct weft__stack *s);
void weft__stack_drop(struct weft_runtime *rt, struct weft__stack *s);
int weft__stack_signal_init(struct weft__worker *w);
/* Called by a parking worker, and by busy ones from their periodic pick:
 * gives back pages of warm stacks beyond the hot caches once they have
 * been idle long enough. Returns the moment (ns) a trim is armed for,
 * which the worker should not sleep past, or 0. */
uint64_t weft__stack_trim(struct weft__worker *w, uint64_t now);
/* Whether the shared pool holds more warm stacks than the caches keep (a
 * trim is due or armed). A relaxed load. */
bool weft__stack_trim_wanted(struct weft__worker *w);
void weft__stack_signal_fini(struct weft__worker *w);

#endif /* WEFT_STACK_H */
