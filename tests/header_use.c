/*
 * weft.h as a program sees it, compiled alone by tools/header: as C11 and
 * as C++11, each with every warning an error, -Wold-style-cast and
 * -pedantic among them (a C library's header must be clean in both; issue
 * 13 found C-style casts warning in C++ programs). Every inline helper
 * and every value macro is used once, so that their bodies compile too.
 * Not run: compiling is the check.
 */
#include <weft.h>

int weft_header_use(void);

int weft_header_use(void)
{
	void *e = weft_err_ptr(-22);
	unsigned flags = WEFT_RUN_STOP_ON_SIGNALS | WEFT_SPAWN_PINNED |
			 WEFT_SPAWN_DETACHED | WEFT_TIMEOUT_CANCEL |
			 WEFT_SO_REUSEPORT | WEFT_SO_NODELAY | WEFT_SO_V6ONLY |
			 WEFT_SEM_BOUNDED | WEFT_PROC_STDIN | WEFT_PROC_STDOUT |
			 WEFT_PROC_STDERR | WEFT_PROC_STDERR_TO_STDOUT |
			 WEFT_PROC_DEVNULL | WEFT_PROC_SEARCH_PATH;
	uint64_t t = WEFT_NSEC_PER_SEC + WEFT_NSEC_PER_MSEC +
		     WEFT_NSEC_PER_USEC;
	unsigned long v = WEFT_VERSION_NUMBER;
	int n = WEFT_TLS_KEYS + WEFT_SEL_SEND + WEFT_SEL_RECV +
		WEFT_MAX_ERRNO;

	if (t == WEFT_NEVER || flags == WEFT_STACK_CACHE_NONE)
		return -1;
	{
		WEFT_TIMEOUT_SCOPE(WEFT_NSEC_PER_SEC);
		WEFT_DEADLINE_SCOPE(WEFT_NEVER);
		if (n == 0)
			return 0;
	}
	return weft_is_err(e) + weft_ptr_err(e) + (v != 0) + n;
}
