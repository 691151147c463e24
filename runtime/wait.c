/*
 * The conditions every wait shares (wait.h): cancellation and deadlines.
 */
#include <errno.h>

#include "task.h"
#include "timer.h"
#include "wait.h"
#include "worker.h"

int weft__wait_why(struct weft__wait *wt)
{
	struct weft__tcb *self = wt->self;

	if (weft__task_cancel_pending(self))
		return -ECANCELED;
	if (wt->deadline == WEFT_NEVER)
		return 0;
	if (!wt->armed) {
		if (wt->deadline <= weft_now() ||
		    !weft__timer_add(self->rt, &wt->tm, self, wt->deadline)) {
			wt->due = true;
			return -ETIMEDOUT;
		}
		wt->armed = true;
		return 0;
	}
	return weft__timer_fired(&wt->tm) ? -ETIMEDOUT : 0;
}

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
