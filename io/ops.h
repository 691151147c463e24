/*
 * What io/ files share. io/ sits on the core: it includes runtime/ headers
 * and calls the core (tasks, timers, the reactor in runtime/ring.h), never
 * the reverse (tools/layers checks it).
 */
#ifndef WEFT_OPS_H
#define WEFT_OPS_H

#include "../runtime/base.h"

/* io/ops.c: waits until fd is ready for `events` (POLLIN, POLLOUT, ...);
 * returns the ready mask, or -ECANCELED, -ETIMEDOUT, -EPERM (not in a
 * task) or the poll's error. Task context. */
int weft__ops_poll(int fd, unsigned events);

#endif
