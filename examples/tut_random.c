/*
 * Tutorial "The asyncio Event Loop" (a video lesson): a coroutine randn()
 * that waits 3 seconds and returns a random number from 1 to 10, awaited
 * once, then ten of them gathered. Ten waits of 3 s take 3 s, not 30.
 *
 *   asyncio:                                   weft:
 *     r = await randn()                          randn() called inline
 *     await asyncio.gather(*(randn() ...))       weft_spawn() x10, weft_gather()
 *     random.randint(1, 10)                      rand_r() % 10 + 1, own seed
 *     print(f'{r} took {elapsed:0.2f} seconds')  the same format
 *
 * Output, as in the lesson (the numbers are random):
 *
 *   6 took 3.00 seconds
 *   [1, 5, 1, 8, 10, 3, 3, 7, 2, 9] took 3.00 seconds
 *
 * The lesson shows its main() only on screen; the transcript gives its
 * calls (perf_counter, gather over a generator of ten randn()) and its
 * output, and the course's previous lesson shows randn() itself (sleep
 * 3 s, return randint(1, 10)). It also ran a version gathering three
 * ("[1, 5, 1] took 3.00 seconds"), the same program with 3 for 10. The
 * numbers cannot match the lesson's: they are random. -r fixes the seed
 * to repeat a run.
 *
 * Run:  tut_random [-s SCALE] [-r SEED]
 * -s multiplies every wait (-s 0.1 runs ten times faster); times are
 * printed in nominal seconds (real ones divided by SCALE).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

#define NGATHER 10

static double scale = 1.0;

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

/* Real time since t in nominal seconds (divided by the scale). */
static double nominal_since(uint64_t t)
{
	return (double)(weft_now() - t) / (double)WEFT_NSEC_PER_SEC / scale;
}

/* Waits, then returns a number in 1..10 drawn from its own seed, or 0 if
 * cancelled. rand_r() keeps its state in the caller's variable, so tasks
 * running on several workers at once share nothing. */
static void *randn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	if (weft_sleep(scaled_ns(3)) < 0)
		return (void *)0;
	return (void *)(uintptr_t)(rand_r(&seed) % 10 + 1);
}

static void *amain(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	weft_task *t[NGATHER];
	void *r[NGATHER];
	uint64_t start;
	size_t n;
	int err = 0;

	/* Awaiting a coroutine runs it to its end before the next line. */
	start = weft_now();
	r[0] = randn((void *)(uintptr_t)seed);
	if (!r[0])
		return (void *)1;
	printf("%lu took %.2f seconds\n", (unsigned long)(uintptr_t)r[0],
	       nominal_since(start));

	start = weft_now();
	for (n = 0; n < NGATHER; n++) {
		/* A different seed for each task, spread apart. */
		t[n] = weft_spawn(randn, (void *)(uintptr_t)(seed + 0x9e3779b9u *
							      (n + 1)));
		if (!t[n]) {
			fprintf(stderr, "weft_spawn failed\n");
			err = -1;
			break;
		}
	}
	if (err < 0) /* do not wait for the ones already started */
		for (size_t i = 0; i < n; i++)
			weft_cancel(t[i]);
	if (weft_gather(t, n, r) < 0)
		err = -1;
	for (size_t i = 0; i < n; i++)
		weft_task_release(t[i]);
	if (err < 0)
		return (void *)1;
	/* print(list): Python's "[a, b, c]". */
	for (size_t i = 0; i < NGATHER; i++)
		printf("%s%lu", i ? ", " : "[", (unsigned long)(uintptr_t)r[i]);
	printf("] took %.2f seconds\n", nominal_since(start));
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned seed = (unsigned)weft_now();
	void *res;
	char *end;
	int opt, err;

	while ((opt = getopt(argc, argv, "s:r:h")) != -1) {
		switch (opt) {
		case 's':
			scale = strtod(optarg, &end);
			if (end != optarg && *end == '\0' && scale > 0 &&
			    scale <= 1000)
				continue;
			break;
		case 'r':
			seed = (unsigned)strtoul(optarg, &end, 0);
			if (end != optarg && *end == '\0')
				continue;
			break;
		}
		fprintf(stderr, "usage: %s [-s SCALE] [-r SEED]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* lines show at once in a pipe */
	err = weft_run(amain, (void *)(uintptr_t)seed, NULL, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
