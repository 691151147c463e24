/*
 * Host name resolution: getaddrinfo(3) run on the blocking pool
 * (runtime/pool.c), since it may read files and wait on DNS servers for
 * seconds. Its EAI_* codes become weft's: the resolver's own failures
 * WEFT_EAI_* (weft.h), which weft_strerror() renders with gai_strerror()'s
 * text (a user reads "Name or service not known", not "No such file or
 * directory": issue 13), the others negative errno values;
 * weft_tcp_connect() (io/net.c) resolves host names through it.
 */
#include <errno.h>
#include <netdb.h>

#include "../runtime/base.h"


/* One getaddrinfo() call, on the waiting task's stack; the pool's done
 * flag publishes rc, err and res back to the task. */
struct gai_call {
	const char *host, *service;
	const struct addrinfo *hints;
	struct addrinfo *res;
	int rc;  /* getaddrinfo()'s return */
	int err; /* errno after an EAI_SYSTEM failure, read on the pool
		    thread at once: that thread's errno is not the task's */
};

static void *gai_run(void *arg)
{
	struct gai_call *c = arg;

	c->rc = getaddrinfo(c->host, c->service, c->hints, &c->res);
	c->err = c->rc == EAI_SYSTEM ? errno : 0;
	return NULL;
}

/* EAI_* to weft's code: WEFT_EAI_* for the resolver's own failures, an
 * errno value for the rest. Codes getaddrinfo() is not documented to
 * return become -EIO. */
static int gai_err(int rc, int err)
{
	int code = weft__base_eai_err(rc);

	if (code)
		return code;
	switch (rc) {
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_FAMILY:
		return -EAFNOSUPPORT;
	case EAI_BADFLAGS:
	case EAI_SOCKTYPE:
		return -EINVAL;
	case EAI_SYSTEM:
		return err > 0 ? -err : -EIO;
	default:
		return -EIO;
	}
}

int weft_getaddrinfo(const char *host, const char *service,
		     const struct addrinfo *hints, struct addrinfo **res)
{
	struct gai_call c = { .host = host, .service = service,
			      .hints = hints };
	int err;

	if (!res)
		return -EINVAL;
	*res = NULL;
	if (!host && !service)
		return -EINVAL;
	err = weft_run_blocking(gai_run, &c, NULL);
	if (err < 0)
		return err;
	if (c.rc != 0)
		return gai_err(c.rc, c.err);
	*res = c.res;
	return 0;
}
