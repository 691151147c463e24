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

/* io/ops.c: weft_writev_all(), which also counts in *done the bytes
 * written, whatever it returns (the buffered writer, io/writer.c, keeps
 * exactly what was not written). Task context. */
ssize_t weft__ops_writev_all(int fd, const struct iovec *iov, int iovcnt,
			     int64_t offset, size_t *done);

#endif
