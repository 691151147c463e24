/*
 * Waiting for tasks to end (await.c).
 */
#ifndef WEFT_AWAIT_H
#define WEFT_AWAIT_H

#include "base.h"

struct weft__tcb;

/* The end of t, told to every waiter on its list (await, join,
 * waitsets); called once, by the ending task's last step (task.c).
 * dropped: a drop at shutdown, which wakes no task. */
void weft__await_finish(struct weft__tcb *t, bool dropped);

#endif /* WEFT_AWAIT_H */
