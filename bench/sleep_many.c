/*
 * sleep_many: n tasks (default 100,000) that each weft_sleep(50 ms) at
 * once, gathered by the main task: the timer service under a crowd, all
 * deadlines landing in the same few slots of the wheel. Each task checks
 * that its sleep did not end early. Reports the wall time of the best
 * repetition (spawn, sleep, gather, release; 50 ms is the floor) and the
 * growth of the process's peak resident set (getrusage ru_maxrss) over the
 * resident set before the first repetition, divided by n, as park_many
 * does.
 */
#include <stdatomic.h>

#include "bench.h"

#define SLEEP_NS (50 * WEFT_NSEC_PER_MSEC)

static unsigned long n;
static weft_task **h;
static atomic_ulong early; /* sleeps that ended before 50 ms */

static void *sleeper(void *arg)
{
	uint64_t t0 = weft_now();
	int err = weft_sleep(SLEEP_NS);

	if (err < 0)
		return (void *)1;
	if (weft_now() - t0 < SLEEP_NS)
		atomic_fetch_add_explicit(&early, 1, memory_order_relaxed);
	return arg;
}

static uint64_t rep(void *p)
{
	uint64_t t0 = bench_now_ns();
	void **res = p;
	int err;

	for (unsigned long i = 0; i < n; i++)
		if (!(h[i] = weft_spawn(sleeper, NULL)))
			return 0;
	err = weft_gather(h, n, res);
	for (unsigned long i = 0; i < n; i++)
		weft_task_release(h[i]);
	uint64_t d = bench_now_ns() - t0;
	if (err < 0) {
		fprintf(stderr, "sleep_many: gather: %s\n", weft_strerror(err));
		return 0;
	}
	for (unsigned long i = 0; i < n; i++) {
		if (res[i] != NULL) {
			fprintf(stderr, "sleep_many: a weft_sleep failed\n");
			return 0;
		}
	}
	if (atomic_load(&early)) {
		fprintf(stderr, "sleep_many: %lu sleeps ended early\n",
			atomic_load(&early));
		return 0;
	}
	return d;
}

static struct bench_args args;

static void *amain(void *p)
{
	long rss_base = bench_rss_kib();
	uint64_t best = bench_best(rep, p, args.reps);

	if (!best)
		return (void *)1;
	long peak = bench_peak_rss_kib();
	printf("RESULT weft sleep_many %.1f ms tasks=%lu workers=%u "
	       "peak_rss_kib_per_task=%.2f\n",
	       (double)best / 1e6, n, weft_worker_count(),
	       (double)(peak - rss_base) / n);
	return NULL;
}

int main(int argc, char **argv)
{
	bench_parse(argc, argv, &args);
	n = args.n ? args.n : 100000;
	h = malloc(n * sizeof(*h));
	void **res = malloc(n * sizeof(*res));
	if (!h || !res)
		return 1;
	int rc = bench_run(amain, res, &args);
	free(h);
	free(res);
	return rc;
}
