/*
 * spawn_many: from one task, spawn n tasks (default 200,000) that each
 * return their index, await them all in order, check the sum.
 * Reports ns per task (spawn + run + await + release), and what the
 * scheduler did for them over all repetitions, warm-up included, from
 * weft_metrics(), per 1,000 tasks: steals that found work
 * (steals_per_1k), tasks those steals moved (moved_per_1k), workers that
 * slept in their reactor (parks_per_1k) and of those, sleeps ended by a
 * notify (wakes_per_1k); left out in a build without metrics. Counts, not
 * times: they tell a wake storm (parks and wakes growing with the
 * workers) from contention on shared lines (the same counts, more time).
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
	struct weft_metrics m0 = { .size = sizeof(m0) };
	struct weft_metrics m1 = { .size = sizeof(m1) };
	int have = weft_metrics(NULL, &m0) == 0;
	uint64_t best = bench_best(rep, c, args.reps);
	double per = 1000.0 / ((double)c->n * (args.reps + 1));

	if (!best)
		return (void *)1;
	have = have && weft_metrics(NULL, &m1) == 0;
	printf("RESULT weft spawn_many %.1f ns/task tasks=%lu workers=%u",
	       (double)best / c->n, c->n, weft_worker_count());
	if (have)
		printf(" steals_per_1k=%.2f moved_per_1k=%.1f parks_per_1k=%.2f "
		       "wakes_per_1k=%.2f",
		       (double)(m1.steals - m0.steals) * per,
		       (double)(m1.steal_tasks - m0.steal_tasks) * per,
		       (double)(m1.parks - m0.parks) * per,
		       (double)(m1.wakes - m0.wakes) * per);
	printf("\n");
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
