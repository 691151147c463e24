/*
 * chained_spawn: a chain of n tasks (default 100,000), each spawning the
 * next (detached) and ending. The main task waits for the last link by
 * yielding until it has run. Reports ns per link.
 */
#include <stdatomic.h>

#include "bench.h"

static atomic_ulong reached;

static void *link_fn(void *arg)
{
	uintptr_t left = (uintptr_t)arg;

	if (left == 0) {
		atomic_store_explicit(&reached, 1, memory_order_release);
		return NULL;
	}
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_DETACHED };
	if (weft_spawn_opts(NULL, link_fn, (void *)(left - 1), &o) < 0)
		atomic_store_explicit(&reached, 2, memory_order_release);
	return NULL;
}

static unsigned long n;

static uint64_t rep(void *p)
{
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_DETACHED };
	uint64_t t0 = bench_now_ns();

	(void)p;
	atomic_store(&reached, 0);
	if (weft_spawn_opts(NULL, link_fn, (void *)(uintptr_t)(n - 1), &o) < 0)
		return 0;
	while (!atomic_load_explicit(&reached, memory_order_acquire))
		weft_yield();
	if (atomic_load(&reached) != 1)
		return 0;
	return bench_now_ns() - t0;
}

static struct bench_args args;

static void *amain(void *p)
{
	uint64_t best = bench_best(rep, p, args.reps);

	if (!best)
		return (void *)1;
	printf("RESULT weft chained_spawn %.1f ns/link links=%lu workers=%u\n",
	       (double)best / n, n, weft_worker_count());
	return NULL;
}

int main(int argc, char **argv)
{
	bench_parse(argc, argv, &args);
	n = args.n ? args.n : 100000;
	return bench_run(amain, NULL, &args);
}
