/*
 * Task groups (group.c).
 */
#ifndef WEFT_GROUP_H
#define WEFT_GROUP_H

#include "base.h"

struct weft__tcb;

/* group.c: a group task has ended (called by task_finish()). */
void weft__group_task_end(struct weft__tcb *t);
/* Links t, not yet queued, into g (a slot was reserved). */
void weft__group_link(struct weft_group *g, struct weft__tcb *t);

#endif /* WEFT_GROUP_H */
