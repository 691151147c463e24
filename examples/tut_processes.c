/*
 * Tutorial 1: three "processes" (jobs that only wait) of 2, 3 and 4
 * seconds, run first one after the other and then all at once.
 *
 * The asyncio program it answers: a coroutine that sleeps for its
 * duration and then reports that it is done and how long after the start;
 * a main that first awaits the three coroutines one by one (9 s in all)
 * and then passes them to asyncio.gather (4 s in all, the longest one),
 * printing the total of each way.
 *
 *   asyncio:                             weft:
 *     await process("A", 2)  (each)        process(&jobs[0]) called inline
 *     await asyncio.gather(a, b, c)        weft_spawn() x3, weft_gather()
 *
 * Run:  tut_processes [-s SCALE]
 * -s multiplies every duration (-s 0.01 runs 100 times faster). Times are
 * measured, in real seconds, from the start of each phase:
 *
 *   sequential:
 *   done A (2 s): 2.00 seconds from start
 *   done B (3 s): 5.00 seconds from start
 *   done C (4 s): 9.00 seconds from start
 *   sequential total: 9.00 seconds
 *   gathered:
 *   done A (2 s): 2.00 seconds from start
 *   done B (3 s): 3.00 seconds from start
 *   done C (4 s): 4.00 seconds from start
 *   gathered total: 4.00 seconds
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;

struct job {
	const char *name;
	unsigned seconds;       /* nominal duration, before scaling */
	const uint64_t *start;  /* weft_now() at the start of the phase */
};

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

static double seconds_since(uint64_t t)
{
	return (double)(weft_now() - t) / (double)WEFT_NSEC_PER_SEC;
}

/* One process: wait, then say so. Returns NULL, or the sleep's error
 * (cancellation) as a non-NULL result. */
static void *process(void *arg)
{
	struct job *j = arg;
	int err = weft_sleep(scaled_ns(j->seconds));

	if (err < 0)
		return (void *)(intptr_t)err;
	printf("done %s (%u s): %.2f seconds from start\n", j->name, j->seconds,
	       seconds_since(*j->start));
	return NULL;
}

static void *amain(void *arg)
{
	uint64_t start;
	struct job jobs[3] = {
		{ "A", 2, &start }, { "B", 3, &start }, { "C", 4, &start },
	};
	weft_task *t[3];
	void *res[3];
	int err;

	(void)arg;
	/* One after the other: each call waits its whole duration before
	 * the next starts, as awaiting a coroutine directly does. */
	printf("sequential:\n");
	start = weft_now();
	for (int i = 0; i < 3; i++)
		if (process(&jobs[i]) != NULL)
			return (void *)1;
	printf("sequential total: %.2f seconds\n", seconds_since(start));

	/* All at once: three tasks that wait side by side. */
	printf("gathered:\n");
	start = weft_now();
	for (int i = 0; i < 3; i++) {
		t[i] = weft_spawn(process, &jobs[i]);
		if (!t[i]) {
			fprintf(stderr, "weft_spawn failed\n");
			for (int k = 0; k < i; k++)
				weft_cancel(t[k]);
			weft_gather(t, (size_t)i, NULL);
			while (i-- > 0)
				weft_task_release(t[i]);
			return (void *)1;
		}
	}
	err = weft_gather(t, 3, res);
	for (int i = 0; i < 3; i++)
		weft_task_release(t[i]);
	if (err < 0 || res[0] || res[1] || res[2]) {
		fprintf(stderr, "gather: %s\n", weft_strerror(err));
		return (void *)1;
	}
	printf("gathered total: %.2f seconds\n", seconds_since(start));
	return NULL;
}

int main(int argc, char **argv)
{
	void *res;
	char *end;
	int opt, err;

	while ((opt = getopt(argc, argv, "s:h")) != -1) {
		if (opt == 's') {
			scale = strtod(optarg, &end);
			if (end != optarg && *end == '\0' && scale > 0 &&
			    scale <= 1000)
				continue;
		}
		fprintf(stderr, "usage: %s [-s SCALE]\n", argv[0]);
		return 2;
	}
	/* Line by line even into a pipe, so a reader sees each line as it
	 * happens. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	err = weft_run(amain, NULL, NULL, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
