/*
 * Tutorial "Asyncio Event Loop in Action", first program: three
 * "processes" (jobs that only wait) of 2, 3 and 4 seconds, run first one
 * after the other with a blocking sleep, then all at once on the event
 * loop.
 *
 *   asyncio:                                weft:
 *     def process(n): time.sleep(n)           process(): clock_nanosleep()
 *     run_processes()  (before any loop)      called from main(), no runtime
 *     async def aprocess(n): await asleep(n)  aprocess(): weft_sleep()
 *     asyncio.run(run_aprocesses())           weft_run(run_aprocesses, ...)
 *     await asyncio.gather(a(2), a(3), a(4))  weft_spawn() x3, weft_gather()
 *
 * Output, the tutorial's lines exactly:
 *
 *   done process 2 - 2.0 seconds from start
 *   done process 3 - 5.0 seconds from start
 *   done process 4 - 9.0 seconds from start
 *   SYNC TIME:  9.0
 *   done async process 2 - 2.0 seconds from start
 *   done async process 3 - 3.0 seconds from start
 *   done async process 4 - 4.0 seconds from start
 *   ASYNC TIME:  4.0
 *
 * (Python's print('SYNC TIME: ', x) puts a space between its two
 * arguments: hence the two spaces.)
 *
 * Run:  tut_processes [-s SCALE]
 * -s multiplies every wait (-s 0.1 runs ten times faster). The times
 * printed are nominal seconds, the real ones divided by SCALE, so the
 * lines read as above at any scale; only the rounding of the last digit
 * may differ from run to run.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;
static uint64_t start_sync, start_async; /* weft_now() at each start */

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

/* Real time since t in nominal seconds (divided by the scale). */
static double nominal_since(uint64_t t)
{
	return (double)(weft_now() - t) / (double)WEFT_NSEC_PER_SEC / scale;
}

/* time.sleep(n): blocks the calling thread. Fine here, before the
 * runtime exists; inside a task it would hold a whole worker. */
static void process(unsigned n)
{
	uint64_t ns = scaled_ns(n);
	struct timespec ts = {
		.tv_sec = (time_t)(ns / WEFT_NSEC_PER_SEC),
		.tv_nsec = (long)(ns % WEFT_NSEC_PER_SEC),
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
	printf("done process %u - %.1f seconds from start\n", n,
	       nominal_since(start_sync));
}

static void run_processes(void)
{
	process(2);
	process(3);
	process(4);
}

/* await asleep(n): only this task waits; its worker runs the others.
 * Returns NULL, or non-NULL if the sleep failed (cancellation). */
static void *aprocess(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;

	if (weft_sleep(scaled_ns(n)) < 0)
		return (void *)1;
	printf("done async process %u - %.1f seconds from start\n", n,
	       nominal_since(start_async));
	return NULL;
}

static void *run_aprocesses(void *arg)
{
	static const unsigned secs[3] = { 2, 3, 4 };
	weft_task *t[3];
	void *res[3] = { NULL, NULL, NULL };
	size_t n;
	int err = 0;

	(void)arg;
	for (n = 0; n < 3; n++) {
		t[n] = weft_spawn(aprocess, (void *)(uintptr_t)secs[n]);
		if (!t[n]) {
			fprintf(stderr, "weft_spawn failed\n");
			err = -1;
			break;
		}
	}
	if (err < 0) /* do not wait for the ones already started */
		for (size_t i = 0; i < n; i++)
			weft_cancel(t[i]);
	if (weft_gather(t, n, res) < 0 || res[0] || res[1] || res[2])
		err = -1;
	for (size_t i = 0; i < n; i++)
		weft_task_release(t[i]);
	return err < 0 ? (void *)1 : NULL;
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

	start_sync = weft_now();
	run_processes();
	printf("SYNC TIME:  %.1f\n", nominal_since(start_sync));

	/* As in the tutorial, the clock starts before the loop does. */
	start_async = weft_now();
	err = weft_run(run_aprocesses, NULL, NULL, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	if (res != NULL)
		return 1;
	printf("ASYNC TIME:  %.1f\n", nominal_since(start_async));
	return 0;
}
