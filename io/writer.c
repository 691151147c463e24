/*
 * The buffered writer (weft.h): a caller-owned buffer and a count of the
 * bytes in it; what goes out goes through weft__ops_writev_all() (io/ops.c),
 * which says how much was written even when it fails, so that the buffer
 * always holds exactly what is still to be written.
 */
#include <errno.h>
#include <string.h>

#include "ops.h"
#include "weft.h"

void weft_writer_init(struct weft_writer *w, int fd, void *buf, size_t cap)
{
	w->fd = fd;
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
}

/* The first n buffered bytes went out. */
static void drop(struct weft_writer *w, size_t n)
{
	if (n >= w->len) {
		w->len = 0;
		return;
	}
	memmove(w->buf, w->buf + n, w->len - n);
	w->len -= n;
}

int weft_writer_flush(struct weft_writer *w)
{
	struct iovec v;
	size_t done;
	ssize_t r;

	if (!w)
		return -EINVAL;
	if (!w->len)
		return 0;
	v.iov_base = w->buf;
	v.iov_len = w->len;
	r = weft__ops_writev_all(w->fd, &v, 1, -1, &done);
	drop(w, done);
	return r < 0 ? (int)r : 0;
}

int weft_writer_write(struct weft_writer *w, const void *data, size_t len)
{
	struct iovec v[2];
	size_t done;
	ssize_t r;

	if (!w || (!data && len))
		return -EINVAL;
	if (len <= w->cap - w->len) {
		if (len)
			memcpy(w->buf + w->len, data, len);
		w->len += len;
		return 0;
	}
	/* It does not fit: the buffer and the data in one vectored write
	 * (no copy). The buffer goes first, so an error leaves in it what
	 * of it was not written, and none of data taken, unless the buffer
	 * had all gone out. */
	v[0].iov_base = w->buf;
	v[0].iov_len = w->len;
	v[1].iov_base = (void *)data;
	v[1].iov_len = len;
	r = weft__ops_writev_all(w->fd, v, 2, -1, &done);
	drop(w, done);
	return r < 0 ? (int)r : 0;
}
