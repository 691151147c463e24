/*
 * dlopen_check LIB: loads the shared library LIB at run time (dlopen, as
 * a plugin host or a language binding would), runs a runtime through the
 * symbols it finds, and exits 0 if everything worked. libweft.so carries
 * STATIC_TLS (its worker pointer is initial-exec thread-local, a load
 * per use instead of a call): glibc places such a module's few bytes in
 * the static TLS space it keeps for dlopen, and this checks that it does.
 * Run by test_runtime (runtime/library_loads_with_dlopen); it is its own
 * program because the tests link weft statically.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>

#include "weft.h"

typedef int (*run_fn)(weft_fn, void *, const struct weft_config *, void **);
typedef weft_task *(*spawn_fn)(weft_fn, void *);
typedef int (*await_fn)(weft_task *, void **);
typedef int (*release_fn)(weft_task *);

static spawn_fn spawn;
static await_fn await_;
static release_fn release;

static void *child(void *arg)
{
	return (void *)((uintptr_t)arg * 2);
}

static void *amain(void *arg)
{
	weft_task *t = spawn(child, arg);
	void *r = NULL;

	if (!t || await_(t, &r) != 0)
		return NULL;
	release(t);
	return r;
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { .workers = 2 };
	void *h, *r = NULL;
	run_fn run;
	int err;

	if (argc != 2) {
		fprintf(stderr, "usage: dlopen_check LIB\n");
		return 2;
	}
	h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen_check: %s\n", dlerror());
		return 1;
	}
	run = (run_fn)dlsym(h, "weft_run");
	spawn = (spawn_fn)dlsym(h, "weft_spawn");
	await_ = (await_fn)dlsym(h, "weft_await");
	release = (release_fn)dlsym(h, "weft_task_release");
	if (!run || !spawn || !await_ || !release) {
		fprintf(stderr, "dlopen_check: a symbol is missing\n");
		return 1;
	}
	err = run(amain, (void *)21, &cfg, &r);
	if (err != 0 || r != (void *)42) {
		fprintf(stderr, "dlopen_check: weft_run returned %d, main %p\n",
			err, r);
		return 1;
	}
	if (dlclose(h) != 0) {
		fprintf(stderr, "dlopen_check: dlclose: %s\n", dlerror());
		return 1;
	}
	return 0;
}
