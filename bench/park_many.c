/*
 * park_many: n tasks (default 1,000,000) parked at once, each awaiting one
 * gate task, then released and gathered; guard pages on (the default).
 * Reports the seconds of the best repetition, and the resident set per
 * parked task: growth of /proc/self/statm's resident size, sampled once
 * all waiters have started, over its size before the first repetition,
 * divided by n (the largest over the repetitions), as
 *   RESULT weft park_many <s> s tasks=N workers=W rss_per_task_kib=K
 *          peak_rss_mib=M
 * bench/tokio samples Tokio's figure the same way. bench/run checks
 * rss_per_task_kib against its target (< 5 KiB).
 */
#include <stdatomic.h>

#include "bench.h"

static unsigned long n;
static weft_task **h;
static atomic_ulong parked;
static atomic_int open_gate;
static weft_task *gate;

static void *gate_fn(void *arg)
{
	while (!atomic_load_explicit(&open_gate, memory_order_acquire))
		weft_yield();
	return arg;
}

static void *waiter(void *arg)
{
	atomic_fetch_add_explicit(&parked, 1, memory_order_relaxed);
	if (weft_await(gate, NULL) < 0)
		return (void *)1;
	return arg;
}

static long rss_base;
static long parked_rss_kib;

static uint64_t rep(void *p)
{
	uint64_t t0 = bench_now_ns();
	void **res = p;

	atomic_store(&parked, 0);
	atomic_store(&open_gate, 0);
	if (!(gate = weft_spawn(gate_fn, NULL)))
		return 0;
	for (unsigned long i = 0; i < n; i++)
		if (!(h[i] = weft_spawn(waiter, NULL)))
			return 0;
	while (atomic_load_explicit(&parked, memory_order_relaxed) < n)
		weft_yield();
	long rss = bench_rss_kib() - rss_base;
	if (rss > parked_rss_kib)
		parked_rss_kib = rss;
	atomic_store_explicit(&open_gate, 1, memory_order_release);
	int err = weft_gather(h, n, NULL);
	for (unsigned long i = 0; i < n; i++)
		weft_task_release(h[i]);
	weft_task_release(gate);
	(void)res;
	if (err < 0)
		return 0;
	return bench_now_ns() - t0;
}

static struct bench_args args;

static void *amain(void *p)
{
	rss_base = bench_rss_kib();
	uint64_t best = bench_best(rep, p, args.reps);

	if (!best)
		return (void *)1;
	long peak = bench_peak_rss_kib();
	printf("RESULT weft park_many %.3f s tasks=%lu workers=%u "
	       "rss_per_task_kib=%.2f peak_rss_mib=%ld\n",
	       (double)best / 1e9, n, weft_worker_count(),
	       (double)parked_rss_kib / n, peak / 1024);
	return NULL;
}

int main(int argc, char **argv)
{
	bench_parse(argc, argv, &args);
	n = args.n ? args.n : 1000000;
	h = malloc(n * sizeof(*h));
	if (!h)
		return 1;
	int rc = bench_run(amain, NULL, &args);
	free(h);
	return rc;
}
