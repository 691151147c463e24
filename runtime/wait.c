/*
 * Deadlines of waits with a timeout of their own (wait.h).
 */
#include <errno.h>

#include "task.h"
#include "timer.h"
#include "wait.h"
#include "worker.h"

uint64_t weft__wait_deadline(uint64_t timeout_ns)
{
	struct weft__worker *w = weft__worker_self();
	uint64_t d = WEFT_NEVER;

	if (timeout_ns != WEFT_NEVER) {
		uint64_t now = weft_now();
		d = timeout_ns >= WEFT_NEVER - now ? WEFT_NEVER
						   : now + timeout_ns;
	}
	if (w && w->current && w->current->deadline < d)
		d = w->current->deadline;
	return d;
}
