/*
 * Task-local storage (tls.c).
 */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H

#include "base.h"

/* One task-local value and the key it was stored under (tls.c). */
struct weft__tls_slot {
	void *value;
	unsigned key;
};

struct weft__tcb;

/* An ending task's values: each key's destructor runs on its value. */
void weft__tls_run_destructors(struct weft__tcb *t);

#endif /* WEFT_TLS_H */
