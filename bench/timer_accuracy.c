/*
 * timer_accuracy: one task sleeps 1 ms, n times in a row (default 1,000),
 * and measures each sleep with weft_now(). The overshoot is the measured
 * time minus 1 ms: what the timing wheel's slot (16.384 us) and the
 * wake-up of a worker add. A sleep that ends early fails the run (the
 * header promises it never does). Reports the mean overshoot, its 99th
 * percentile and maximum, in microseconds, after a warm-up of 10 sleeps.
 */
#include "bench.h"

#define SLEEP_NS WEFT_NSEC_PER_MSEC

static unsigned long n;

static void *amain(void *p)
{
	uint64_t *over = p, sum = 0;

	for (int i = 0; i < 10; i++)
		if (weft_sleep(SLEEP_NS) < 0)
			return (void *)1;
	for (unsigned long i = 0; i < n; i++) {
		uint64_t t0 = weft_now();
		int err = weft_sleep(SLEEP_NS);
		uint64_t d = weft_now() - t0;

		if (err < 0) {
			fprintf(stderr, "timer_accuracy: weft_sleep: %s\n",
				weft_strerror(err));
			return (void *)1;
		}
		if (d < SLEEP_NS) {
			fprintf(stderr,
				"timer_accuracy: sleep %lu ended %llu ns early\n",
				i, (unsigned long long)(SLEEP_NS - d));
			return (void *)1;
		}
		over[i] = d - SLEEP_NS;
		sum += over[i];
	}
	qsort(over, n, sizeof *over, bench_cmp_u64);
	size_t p99 = (size_t)(0.99 * (double)n);
	if (p99 >= n)
		p99 = n - 1;
	printf("RESULT weft timer_accuracy %.1f us/overshoot sleeps=%lu "
	       "p99_us=%.1f max_us=%.1f\n",
	       (double)sum / n / 1e3, n, (double)over[p99] / 1e3,
	       (double)over[n - 1] / 1e3);
	return NULL;
}

static struct bench_args args;

int main(int argc, char **argv)
{
	bench_parse(argc, argv, &args);
	n = args.n ? args.n : 1000;
	uint64_t *over = malloc(n * sizeof(*over));
	if (!over)
		return 1;
	int rc = bench_run(amain, over, &args);
	free(over);
	return rc;
}
