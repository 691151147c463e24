/*
 * spawn_many: from one task, spawn n tasks (default 200,000) that each
 * return their index, await them all in order, check the sum.
 * Reports ns per task (spawn + run + await + release).
 */
#include "bench.h"

struct ctx {
	unsigned long n;
	weft_task **h;
};

static void *child(void *arg)
{
	return arg;
}

static uint64_t rep(void *p)
{
	struct ctx *c = p;
	uint64_t t0 = bench_now_ns(), sum = 0;

	for (unsigned long i = 0; i < c->n; i++) {
		c->h[i] = weft_spawn(child, (void *)(uintptr_t)i);
		if (!c->h[i])
			return 0;
	}
	for (unsigned long i = 0; i < c->n; i++) {
		void *r;
		if (weft_await(c->h[i], &r) < 0)
			return 0;
		sum += (uintptr_t)r;
		weft_task_release(c->h[i]);
	}
	uint64_t d = bench_now_ns() - t0;
	if (sum != (uint64_t)c->n * (c->n - 1) / 2) {
		fprintf(stderr, "spawn_many: bad sum %llu\n",
			(unsigned long long)sum);
		return 0;
	}
	return d;
}

static struct bench_args args;

static void *amain(void *p)
{
	struct ctx *c = p;
	uint64_t best = bench_best(rep, c, args.reps);

	if (!best)
		return (void *)1;
	printf("RESULT weft spawn_many %.1f ns/task tasks=%lu workers=%u\n",
	       (double)best / c->n, c->n, weft_worker_count());
	return NULL;
}

int main(int argc, char **argv)
{
	struct ctx c;

	bench_parse(argc, argv, &args);
	c.n = args.n ? args.n : 200000;
	c.h = malloc(c.n * sizeof(*c.h));
	if (!c.h)
		return 1;
	int rc = bench_run(amain, &c, &args);
	free(c.h);
	return rc;
}
