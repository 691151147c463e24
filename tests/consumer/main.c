/*
 * A program that uses weft as a user would, built against an installed
 * copy (tests/run layout: find_package(weft) with the shared and the
 * static library, pkg-config, add_subdirectory; see CMakeLists.txt here).
 * It runs a main task that spawns a task and awaits it; exit status 0
 * when that worked.
 */
#include <errno.h>
#include <stdio.h>
#include <weft.h>

static void *child(void *arg)
{
	return (char *)arg + 1;
}

static void *amain(void *arg)
{
	weft_task *t = weft_spawn(child, arg);
	void *r = NULL;
	int err;

	if (!t)
		return weft_err_ptr(-ENOMEM);
	err = weft_await(t, &r);
	weft_task_release(t);
	if (err < 0)
		return weft_err_ptr(err);
	return r == (char *)arg + 1 ? NULL : weft_err_ptr(-EIO);
}

int main(void)
{
	static char buf[2];
	void *res = NULL;
	int err = weft_run(amain, buf, NULL, &res);

	if (err < 0 || res) {
		fprintf(stderr, "consumer: %s\n",
			weft_strerror(err < 0 ? err : weft_ptr_err(res)));
		return 1;
	}
	printf("consumer: weft %s, a task spawned and awaited\n",
	       weft_version());
	return 0;
}
