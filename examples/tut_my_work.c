/*
 * Tutorial "Asyncio Event Loops Tutorial", the run_until_complete()
 * program: a coroutine prints "Starting Work", works for 5 seconds (a
 * blocking time.sleep(5) stands for the work) and prints "Finishing
 * Work"; the loop runs until it has completed.
 *
 *   asyncio:                                  weft:
 *     loop = asyncio.get_event_loop()           weft_runtime_create(&rt, NULL)
 *     loop.run_until_complete(myWork())         weft_runtime_run(rt, my_work)
 *     time.sleep(5)                             weft_run_blocking(work, ...)
 *     finally: loop.close()                     weft_runtime_destroy(rt)
 *
 * Output, the tutorial's:
 *
 *   Starting Work
 *   Finishing Work
 *
 * time.sleep() inside a coroutine blocks asyncio's only thread: nothing
 * else on the loop runs for those 5 seconds. A blocking call inside a
 * weft task would likewise hold its worker. weft_run_blocking() (asyncio's
 * to_thread()) hands the call to a pool thread instead, and only this
 * task waits for it. The output is the same; the difference would show
 * as soon as another task shared the loop.
 *
 * Run:  tut_my_work [-s SCALE]
 * -s multiplies the 5 s of work (-s 0.1 runs ten times faster).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;

/* The work: a plain blocking call, run on a thread of the blocking pool.
 * arg points to the nanoseconds to sleep. */
static void *work(void *arg)
{
	uint64_t ns = *(const uint64_t *)arg;
	struct timespec ts = {
		.tv_sec = (time_t)(ns / WEFT_NSEC_PER_SEC),
		.tv_nsec = (long)(ns % WEFT_NSEC_PER_SEC),
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
	return NULL;
}

static void *my_work(void *arg)
{
	uint64_t ns = (uint64_t)(5 * scale * (double)WEFT_NSEC_PER_SEC);
	int err;

	(void)arg;
	printf("Starting Work\n");
	err = weft_run_blocking(work, &ns, NULL);
	if (err < 0) {
		fprintf(stderr, "weft_run_blocking: %s\n", weft_strerror(err));
		return (void *)1;
	}
	printf("Finishing Work\n");
	return NULL;
}

int main(int argc, char **argv)
{
	weft_runtime *rt;
	void *res = NULL;
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
	err = weft_runtime_create(&rt, NULL);
	if (err < 0) {
		fprintf(stderr, "weft_runtime_create: %s\n", weft_strerror(err));
		return 1;
	}
	err = weft_runtime_run(rt, my_work, NULL, &res);
	weft_runtime_destroy(rt);
	if (err < 0) {
		fprintf(stderr, "weft_runtime_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
