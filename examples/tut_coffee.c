/*
 * Tutorial 6: breakfast. Brewing coffee and toasting a bagel each take 3
 * seconds; started together and gathered, both are ready after 3 seconds,
 * not 6.
 *
 * The asyncio program it answers: two coroutines, one for the coffee and
 * one for the bagel, that each sleep 3 s and return a sentence saying
 * their item is ready; a main that gathers both, prints the two sentences
 * in the order it asked for them and how long breakfast took.
 *
 *   asyncio:                                     weft:
 *     async def make_coffee(): ... return "..."    void *make_coffee(void *)
 *     a, b = await asyncio.gather(c(), b())        weft_gather(t, 2, res)
 *
 * Run:  tut_coffee [-s SCALE]
 * -s multiplies every duration (-s 0.01 runs 100 times faster):
 *
 *   Coffee is ready
 *   Bagel is ready
 *   total: 3.00 s
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

#define JOB_SECONDS 3.0

static double scale = 1.0;

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

static void *make_coffee(void *arg)
{
	(void)arg;
	if (weft_sleep(scaled_ns(JOB_SECONDS)) < 0)
		return NULL; /* cancelled: no coffee */
	return "Coffee is ready";
}

static void *toast_bagel(void *arg)
{
	(void)arg;
	if (weft_sleep(scaled_ns(JOB_SECONDS)) < 0)
		return NULL;
	return "Bagel is ready";
}

static void *amain(void *arg)
{
	uint64_t start = weft_now();
	weft_task *t[2];
	void *res[2] = { NULL, NULL };
	int err;

	(void)arg;
	t[0] = weft_spawn(make_coffee, NULL);
	t[1] = t[0] ? weft_spawn(toast_bagel, NULL) : NULL;
	if (!t[1]) {
		fprintf(stderr, "weft_spawn failed\n");
		if (t[0]) {
			weft_cancel(t[0]);
			weft_await(t[0], NULL);
			weft_task_release(t[0]);
		}
		return (void *)1;
	}
	err = weft_gather(t, 2, res);
	weft_task_release(t[0]);
	weft_task_release(t[1]);
	if (err < 0 || !res[0] || !res[1]) {
		fprintf(stderr, "gather: %s\n", weft_strerror(err));
		return (void *)1;
	}
	printf("%s\n%s\n", (char *)res[0], (char *)res[1]);
	printf("total: %.2f s\n",
	       (double)(weft_now() - start) / (double)WEFT_NSEC_PER_SEC);
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
	setvbuf(stdout, NULL, _IOLBF, 0); /* lines show at once in a pipe */
	err = weft_run(amain, NULL, NULL, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
