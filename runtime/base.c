/*
 * Fatal errors, error strings and the version.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

void weft__base_die(const char *file, int line, const char *msg)
{
	fprintf(stderr, "weft: %s:%d: %s\n", file, line, msg);
	fflush(stderr);
	abort();
}

const char *weft_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ECANCELED:
		return "cancelled";
	case -ESRCH:
		return "stale task handle (task ended and was released)";
	case -EDEADLK:
		return "a task cannot await itself";
	case -EPERM:
		return "not allowed here (not in task context, or io_uring "
		       "refused)";
	case -EBUSY:
		return "called from inside a runtime";
	case -EALREADY:
		return "task has already ended";
	case -ENOMEM:
		return "out of memory";
	case -EINVAL:
		return "invalid argument";
	case -EAGAIN:
		return "resource temporarily unavailable";
	case -ENOSYS:
		return "io_uring is not available in this kernel";
	default:
		if (err < 0 && err > -4096 && strerrordesc_np(-err))
			return strerrordesc_np(-err);
		return "unknown error";
	}
}

#define WEFT__STR_(x) #x
#define WEFT__STR(x) WEFT__STR_(x)

/* Both from the header's macros, which the build of the library uses. */
const char *weft_version(void)
{
	return WEFT__STR(WEFT_VERSION_MAJOR) "." WEFT__STR(
		WEFT_VERSION_MINOR) "." WEFT__STR(WEFT_VERSION_PATCH);
}

unsigned weft_version_number(void)
{
	return WEFT_VERSION_NUMBER;
}
