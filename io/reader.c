/*
 * The buffered reader: a caller-owned buffer, offsets into it, and reads
 * through weft_read() (so it works on sockets, pipes and files alike, and
 * honours cancellation and deadlines).
 */
#include <errno.h>
#include <string.h>

#include "weft.h"


void weft_reader_init(struct weft_reader *r, int fd, void *buf, size_t cap)
{
	r->fd = fd;
	r->buf = buf;
	r->cap = cap;
	r->start = 0;
	r->end = 0;
}

/* Moves unconsumed bytes to the front, making room at the end. */
static void compact(struct weft_reader *r)
{
	if (r->start == 0)
		return;
	memmove(r->buf, r->buf + r->start, r->end - r->start);
	r->end -= r->start;
	r->start = 0;
}

ssize_t weft_reader_until(struct weft_reader *r, const char *delim,
			  size_t delim_len, char **out)
{
	size_t scanned;

	if (!delim || delim_len == 0 || delim_len > r->cap || !out)
		return -EINVAL;
	/* Search only what is new since the last try (minus the bytes a
	 * delimiter could straddle). */
	scanned = 0;
	for (;;) {
		size_t have = r->end - r->start;
		ssize_t n;

		if (have >= delim_len) {
			size_t from = scanned > delim_len - 1
					      ? scanned - (delim_len - 1)
					      : 0;
			char *hit = memmem(r->buf + r->start + from,
					   have - from, delim, delim_len);
			if (hit) {
				size_t len = (size_t)(hit - (r->buf + r->start)) +
					     delim_len;
				*out = r->buf + r->start;
				r->start += len;
				return (ssize_t)len;
			}
			scanned = have;
		}
		if (have == r->cap)
			return -ENOBUFS;
		if (r->end == r->cap)
			compact(r);
		n = weft_read(r->fd, r->buf + r->end, r->cap - r->end, -1);
		if (n <= 0)
			return n;
		r->end += (size_t)n;
	}
}

ssize_t weft_reader_read(struct weft_reader *r, void *dst, size_t len)
{
	size_t have = r->end - r->start;

	if (have) {
		if (len > have)
			len = have;
		memcpy(dst, r->buf + r->start, len);
		r->start += len;
		if (r->start == r->end)
			r->start = r->end = 0;
		return (ssize_t)len;
	}
	return weft_read(r->fd, dst, len, -1);
}
