/*
 * Fatal errors, error strings and the version.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"

void weft__base_die(const char *file, int line, const char *msg)
{
	fprintf(stderr, "weft: %s:%d: %s\n", file, line, msg);
	fflush(stderr);
	abort();
}

/* Each resolver code of weft.h and getaddrinfo()'s code it stands for:
 * io/resolve.c maps one way (weft__base_eai_err), weft_strerror() the
 * other. */
static const struct {
	int err, eai;
} eai_codes[] = {
	{ WEFT_EAI_NONAME, EAI_NONAME },
	{ WEFT_EAI_AGAIN, EAI_AGAIN },
	{ WEFT_EAI_FAIL, EAI_FAIL },
	{ WEFT_EAI_NODATA, EAI_NODATA },
	{ WEFT_EAI_ADDRFAMILY, EAI_ADDRFAMILY },
	{ WEFT_EAI_SERVICE, EAI_SERVICE },
};

int weft__base_eai_err(int eai)
{
	for (size_t i = 0; i < sizeof(eai_codes) / sizeof(eai_codes[0]); i++)
		if (eai_codes[i].eai == eai)
			return eai_codes[i].err;
	return 0;
}

const char *weft_strerror(int err)
{
	for (size_t i = 0; i < sizeof(eai_codes) / sizeof(eai_codes[0]); i++)
		if (eai_codes[i].err == err)
			return gai_strerror(eai_codes[i].eai);
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

long weft__base_thread_file(int tid, const char *name, char *buf,
			    unsigned long size)
{
	char path[80];
	ssize_t n;
	int fd;

	if (size == 0 || tid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/task/%d/%s", tid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return (long)n;
}
