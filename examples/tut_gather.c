/*
 * Tutorial "Understanding AsyncIO by Code", "Synchronous Mode 2": the
 * same two waits, go(2, 'hello') and go(1, 'world'), passed to
 * asyncio.gather, which returns their results as a list. 2 seconds in
 * all, not 3.
 *
 *   asyncio:                                  weft:
 *     ret = await asyncio.gather(go(2, ...),    weft_spawn() x2,
 *                                go(1, ...))    weft_gather(t, 2, ret)
 *     print(ret)                                "['hello(2)', 'world(1)']"
 *
 * Output, in the tutorial's format:
 *
 *   17:10:30
 *   ['hello(2)', 'world(1)']
 *   17:10:32 (2.0018 sec)
 *
 * The clock times are today's, not the tutorial's, and the last digits of
 * the seconds vary from run to run.
 *
 * Run:  tut_gather [-s SCALE]
 * -s multiplies every wait (-s 0.1 runs ten times faster). The seconds
 * are nominal (real ones divided by SCALE), and so is the clock: the last
 * line shows the start's time of day plus the nominal seconds, so that it
 * reads 2 s after the first at any scale.
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
	weft_task *t[2];
	void *ret[2] = { NULL, NULL };
	struct timespec wall0;
	uint64_t time1 = weft_now();
	double secs;
	char buf[32];
	int err;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &wall0);
	clock_text(buf, sizeof buf, &wall0, 0);
	printf("%s\n", buf);

	t[0] = weft_spawn(go, &gos[0]);
	t[1] = t[0] ? weft_spawn(go, &gos[1]) : NULL;
	if (!t[1]) {
		fprintf(stderr, "weft_spawn failed\n");
		if (t[0]) /* cancelled when main returns */
			weft_task_release(t[0]);
		return (void *)1;
	}
	err = weft_gather(t, 2, ret);
	weft_task_release(t[0]);
	weft_task_release(t[1]);
	if (err < 0 || !ret[0] || !ret[1]) {
		fprintf(stderr, "gather: %s\n", weft_strerror(err));
		return (void *)1;
	}
	/* print(ret): a Python list of strings. */
	printf("['%s', '%s']\n", (char *)ret[0], (char *)ret[1]);

	secs = (double)(weft_now() - time1) / (double)WEFT_NSEC_PER_SEC / scale;
	clock_text(buf, sizeof buf, &wall0, secs);
	printf("%s (%.4f sec)\n", buf, secs);
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
