/*
 * Tutorial 2: ten tasks that each wait 3 seconds and then return a random
 * number, gathered. All ten wait at the same time, so the whole run takes
 * 3 seconds, not 30.
 *
 * The asyncio program it answers: a coroutine that sleeps 3 s and returns
 * a random integer; a main that builds ten of them, awaits
 * asyncio.gather() on the lot, prints the list of results and the time
 * the whole thing took.
 *
 *   asyncio:                               weft:
 *     results = await asyncio.gather(...)    weft_spawn() x10, weft_gather()
 *     random.randint(...)                    rand_r() with a per-task seed
 *
 * Run:  tut_random [-s SCALE] [-r SEED]
 * -s multiplies every duration (-s 0.01 runs 100 times faster); -r fixes
 * the random seed (default: from the clock). The results are printed in
 * the order the tasks were started, whatever order they finished in:
 *
 *   task 0 returned 41
 *   ...
 *   task 9 returned 7
 *   total: 3.00 s
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

#define NTASKS 10
#define WAIT_SECONDS 3.0

static double scale = 1.0;

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

/* Waits, then returns a number in 0..99 drawn from its own seed. rand_r()
 * keeps its state in the caller's variable, so tasks running on several
 * workers at once share nothing. */
static void *pick(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	if (weft_sleep(scaled_ns(WAIT_SECONDS)) < 0)
		return (void *)(uintptr_t)UINTPTR_MAX; /* cancelled */
	return (void *)(uintptr_t)(rand_r(&seed) % 100);
}

static void *amain(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	weft_task *t[NTASKS];
	void *res[NTASKS];
	uint64_t start = weft_now();
	size_t n;
	int err = 0;

	for (n = 0; n < NTASKS; n++) {
		/* Different seeds for each task, spread apart. */
		t[n] = weft_spawn(pick, (void *)(uintptr_t)(seed + 0x9e3779b9u * n));
		if (!t[n]) {
			fprintf(stderr, "weft_spawn failed\n");
			err = -1;
			break;
		}
	}
	if (err < 0)
		for (size_t i = 0; i < n; i++)
			weft_cancel(t[i]);
	if (weft_gather(t, n, res) < 0)
		err = -1;
	for (size_t i = 0; i < n; i++)
		weft_task_release(t[i]);
	if (err < 0)
		return (void *)1;
	for (size_t i = 0; i < NTASKS; i++)
		printf("task %zu returned %lu\n", i, (unsigned long)(uintptr_t)res[i]);
	printf("total: %.2f s\n",
	       (double)(weft_now() - start) / (double)WEFT_NSEC_PER_SEC);
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
