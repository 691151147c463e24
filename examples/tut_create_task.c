/*
 * Tutorial "Understanding AsyncIO by Code", "Synchronous Mode 1": two
 * tasks made with create_task, go(2, 'hello') and go(1, 'world'), awaited
 * one after the other. They wait side by side, so the whole takes 2
 * seconds, not 3. main prints the clock time before and after, and the
 * seconds in between.
 *
 *   asyncio:                                  weft:
 *     task1 = asyncio.create_task(go(2, ...))   weft_spawn(go, &gos[0])
 *     await task1; await task2                  weft_await() each
 *     time.strftime("%X")                       strftime("%X"), see below
 *     return f'{what}({delay})'                 snprintf into the go's struct
 *
 * Output, in the tutorial's format:
 *
 *   Start: 17:19:30
 *   End: 17:19:32 (2.0017 sec)
 *
 * The clock times are today's, not the tutorial's, and the last digits of
 * the seconds vary from run to run.
 *
 * Run:  tut_create_task [-s SCALE]
 * -s multiplies every wait (-s 0.1 runs ten times faster). The seconds
 * are nominal (real ones divided by SCALE), and so is the clock: "End:"
 * shows the start's time of day plus the nominal seconds, so that it
 * reads 2 s after "Start:" at any scale.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;

/* go(delay, what): its arguments, and the string it returns. */
struct go {
	unsigned delay;
	const char *what;
	char result[32];
};

static void *go(void *arg)
{
	struct go *g = arg;

	if (weft_sleep((uint64_t)(g->delay * scale *
				  (double)WEFT_NSEC_PER_SEC)) < 0)
		return NULL;
	snprintf(g->result, sizeof g->result, "%s(%u)", g->what, g->delay);
	return g->result;
}

/* time.strftime("%X") for a time `nominal` seconds after `wall0`. */
static void clock_text(char *buf, size_t len, const struct timespec *wall0,
		       double nominal)
{
	time_t t = wall0->tv_sec +
		   (time_t)((double)wall0->tv_nsec / 1e9 + nominal);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%X", &tm);
}

static void *amain(void *arg)
{
	/* Static: a task still running after an error may write into it. */
	static struct go gos[2] = { { 2, "hello", "" }, { 1, "world", "" } };
	weft_task *task1, *task2;
	struct timespec wall0;
	uint64_t time1 = weft_now();
	void *r1 = NULL, *r2 = NULL;
	double secs;
	char buf[32];
	int err;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &wall0);
	clock_text(buf, sizeof buf, &wall0, 0);
	printf("Start: %s\n", buf);

	task1 = weft_spawn(go, &gos[0]);
	task2 = task1 ? weft_spawn(go, &gos[1]) : NULL;
	if (!task2) {
		fprintf(stderr, "weft_spawn failed\n");
		if (task1) /* cancelled when main returns */
			weft_task_release(task1);
		return (void *)1;
	}
	err = weft_await(task1, &r1);
	if (err == 0)
		err = weft_await(task2, &r2);
	weft_task_release(task1);
	weft_task_release(task2);
	if (err < 0 || !r1 || !r2) {
		fprintf(stderr, "await: %s\n", weft_strerror(err));
		return (void *)1;
	}

	/* One reading of the clock for both figures. */
	secs = (double)(weft_now() - time1) / (double)WEFT_NSEC_PER_SEC / scale;
	clock_text(buf, sizeof buf, &wall0, secs);
	printf("End: %s (%.4f sec)\n", buf, secs);
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
