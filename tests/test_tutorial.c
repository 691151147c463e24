/*
 * The tutorial programs (examples/tut_*.c, docs/tutorials.md), run as
 * child processes with their waits scaled down (-s), their standard
 * output (and error) read through a pipe and checked:
 *
 *   - the text: every line exactly as the tutorial shows it, in order.
 *     Where a line holds a measured time, the number is parsed and the
 *     line printed again from it in the program's format, so the whole
 *     line is still compared; the few lines whose order the programs
 *     cannot promise (two timers due in the same 16 us tick) are
 *     compared as a set;
 *   - the times: those the programs print are nominal seconds (the real
 *     ones divided by the scale), checked against the tutorial's within
 *     a tolerance; programs that print no time are timed here, by when
 *     each line arrives on the pipe;
 *   - the relations that show the tasks really waited side by side
 *     (gathered total close to the longest job and clearly below the
 *     sum), asserted in every build.
 *
 * Nominal times are printed with one to four decimals, so every lower
 * bound allows half a tenth for the rounding (LO); a sleep never ends
 * early, so no more is needed. Upper bounds allow 1.3 times the expected
 * time plus 0.01 s of real time in plain builds, more under sanitizers
 * (HI). A line cannot arrive before the program has waited for it, so
 * arrival times have the exact lower bound; their upper bounds count
 * from the program's first line, which comes once it has started
 * (ARRIVED_BY).
 *
 * The examples directory comes from CMake (WT_EXAMPLES_DIR). Without
 * examples in the build (WEFT_BUILD_EXAMPLES=OFF) every test fails, saying
 * so: a skipped test checks nothing, and tests/run must not pass on it.
 * The example binaries are built with the same sanitizer as this test, so
 * a TSan or ASan report in one fails its test through the exit status.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include "weft_test.h"

WT_SUITE(tutorial, 60);

extern char **environ;

/* The time scale the tests run the programs at, as an argument and as a
 * number: every nominal second lasts 0.1 s. */
#define SCALE_ARG "0.1"
#define SCALE 0.1

/* Real seconds allowed beyond 1.3 times a wait (sanitizers: more). */
#define SLACK (0.01 + (WT_SLOW > 1 ? 0.05 * WT_SLOW : 0))
/* Bounds on a printed nominal time that should be `x` seconds. */
#define LO(x) ((x) - 0.051)
#define HI(x) ((x) * 1.3 + SLACK / SCALE)
/* Upper bound on a line's arrival (real seconds) `x` nominal seconds
 * after an earlier line's arrival `from`: 0.1 s more than for a time the
 * program measures, for the pipe between two processes that a loaded
 * machine may not run at once (one line at 0.363 s for 0.284 s, with the
 * 2 CPUs busy). */
#define ARRIVED_BY(from, x) ((from) + (x) * SCALE * 1.3 + SLACK + 0.1)

/* ---- running a program ---------------------------------------------- */

#define OUT_CAP 32768
#define MAX_LINES 256

struct kid {
	pid_t pid;
	int fd;              /* read end of the child's stdout/stderr */
	char out[OUT_CAP];   /* everything it wrote, NUL-terminated */
	size_t len;
	int status;          /* waitpid() status */
	uint64_t started;    /* wt_now_ns() at spawn */
	double secs;         /* spawn to exit */
	char *line[MAX_LINES]; /* out split at newlines (kid_split) */
	int nlines;
	double at[MAX_LINES]; /* when each line's newline was read, in
				 seconds since the spawn */
	int nat;
};

static void kid_start(struct kid *k, const char *name, const char *args[])
{
	char path[512] = "";
	const char *argv[16];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	int p[2], n = 0, err;

#ifndef WT_EXAMPLES_DIR
	cr_assert_fail("the tutorial programs are not built "
		       "(WEFT_BUILD_EXAMPLES=OFF): build them to run %s",
		       name);
#else
	snprintf(path, sizeof path, "%s/%s", WT_EXAMPLES_DIR, name);
#endif
	cr_assert_eq(access(path, X_OK), 0, "%s: %s", path, strerror(errno));
	argv[n++] = name;
	while (*args && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;

	memset(k, 0, sizeof *k);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	/* The child starts with no signal blocked and SIGINT/SIGTERM at
	 * their defaults, whatever Criterion's worker had. */
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	k->started = wt_now_ns();
	err = posix_spawn(&k->pid, path, &fa, &at, (char *const *)argv,
			  environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(p[1]);
	k->fd = p[0];
	cr_assert_eq(err, 0, "posix_spawn(%s): %s", path, strerror(err));
}

/* Reads what the child writes until `want` shows up in it (want NULL:
 * until end of file) or `timeout_s` passes. Returns 1 when found (end of
 * file reached, for NULL), 0 on end of file without it, -1 on timeout. */
static int kid_read(struct kid *k, const char *want, double timeout_s)
{
	uint64_t end = wt_now_ns() + (uint64_t)(timeout_s * 1e9);

	for (;;) {
		if (want && strstr(k->out, want))
			return 1;
		uint64_t now = wt_now_ns();
		if (now >= end)
			return -1;
		struct pollfd pfd = { .fd = k->fd, .events = POLLIN };
		int r = poll(&pfd, 1, (int)((end - now) / 1000000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue; /* the clock check above ends it */
		if (k->len + 1 >= sizeof k->out)
			return -1; /* far more output than any program makes */
		ssize_t n = read(k->fd, k->out + k->len,
				 sizeof k->out - 1 - k->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return want ? 0 : 1;
		/* The programs write whole lines (line-buffered stdout):
		 * a newline read now was printed at most now. */
		double t = (double)(wt_now_ns() - k->started) / 1e9;
		for (ssize_t j = 0; j < n; j++)
			if (k->out[k->len + (size_t)j] == '\n' &&
			    k->nat < MAX_LINES)
				k->at[k->nat++] = t;
		k->len += (size_t)n;
		k->out[k->len] = '\0';
	}
}

/* Reads to the end (killing the child if it takes more than timeout_s),
 * reaps it, and splits the output into lines. */
static void kid_finish(struct kid *k, double timeout_s)
{
	int r = kid_read(k, NULL, timeout_s);

	if (r < 0)
		kill(k->pid, SIGKILL);
	close(k->fd);
	while (waitpid(k->pid, &k->status, 0) < 0 && errno == EINTR)
		;
	k->secs = (double)(wt_now_ns() - k->started) / 1e9;
	cr_assert_geq(r, 0, "%s: no end after %.0f s; output so far:\n%s",
		      "child", timeout_s, k->out);

	/* A kernel without io_uring (or refusing it) is not a failure of
	 * the tutorial: skip, as every weft test does. */
	if (WIFEXITED(k->status) && WEXITSTATUS(k->status) == 1 &&
	    (strstr(k->out, weft_strerror(-EPERM)) ||
	     strstr(k->out, weft_strerror(-ENOSYS))))
		cr_skip_test("io_uring refused by the kernel:\n%s", k->out);

	k->nlines = 0;
	for (char *s = k->out; *s && k->nlines < MAX_LINES;) {
		char *nl = strchr(s, '\n');
		k->line[k->nlines++] = s;
		if (!nl)
			break;
		*nl = '\0';
		s = nl + 1;
	}
}

/* Runs a program to its end (at most timeout_s) and asserts exit 0. */
static void run_ok(struct kid *k, const char *name, const char *args[],
		   double timeout_s)
{
	kid_start(k, name, args);
	kid_finish(k, timeout_s);
	cr_assert(WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0,
		  "%s: status 0x%x; output:\n%s", name, k->status, k->out);
}

/* Output joined back for failure messages (kid_finish cut it at the
 * newlines). */
static const char *dump(struct kid *k)
{
	static char buf[OUT_CAP + MAX_LINES];
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < k->nlines && n < sizeof buf - 2; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\n",
				      k->line[i]);
	return buf;
}

static int count_lines(struct kid *k, const char *exact)
{
	int n = 0;

	for (int i = 0; i < k->nlines; i++)
		n += !strcmp(k->line[i], exact);
	return n;
}

/* ---- checking lines ------------------------------------------------------ */

/* Line i exists and is exactly `want`. */
static void line_is(struct kid *k, int i, const char *want)
{
	cr_assert(i < k->nlines, "line %d missing, wanted '%s':\n%s", i, want,
		  dump(k));
	cr_assert_str_eq(k->line[i], want, "line %d: '%s', wanted '%s'\n%s", i,
			 k->line[i], want, dump(k));
}

/* The whole output is exactly these n lines. */
static void lines_are(struct kid *k, const char *const *want, int n)
{
	for (int i = 0; i < n; i++)
		line_is(k, i, want[i]);
	cr_assert_eq(k->nlines, n, "%d lines, wanted %d:\n%s", k->nlines, n,
		     dump(k));
}

/* Line i holds one number, read with `scan` (one %lf) and returned once
 * the line has been found to be exactly `print` (one %.Nf) printed with
 * it: the text around the number is compared whole, spaces included. */
static double line_num(struct kid *k, int i, const char *scan,
		       const char *print)
{
	char again[256];
	double t;

	cr_assert(i < k->nlines, "line %d missing, wanted '%s':\n%s", i, print,
		  dump(k));
	cr_assert_eq(sscanf(k->line[i], scan, &t), 1,
		     "line %d: '%s', wanted '%s'\n%s", i, k->line[i], print,
		     dump(k));
	snprintf(again, sizeof again, print, t);
	cr_assert_str_eq(k->line[i], again, "line %d: '%s', wanted '%s'\n%s", i,
			 k->line[i], again, dump(k));
	return t;
}

/* A nominal time printed by the program: `what` took t, expected x. */
static void time_ok(struct kid *k, const char *what, double t, double x)
{
	cr_assert(t >= LO(x) && t <= HI(x), "%s: %.4f s, expected %.1f\n%s",
		  what, t, x, dump(k));
}

/* Line i arrived no earlier than `x` nominal seconds after the program
 * was started (the wait before it cannot have ended sooner), and no later
 * than that after line `from` arrived (from < 0: no upper bound). */
static void arrived(struct kid *k, int i, double x, int from)
{
	cr_assert(i < k->nat, "line %d: no arrival time\n%s", i, dump(k));
	cr_assert(k->at[i] >= x * SCALE, "line %d after %.3f s, before the "
		  "%.2f s it waits for\n%s", i, k->at[i], x * SCALE, dump(k));
	if (from >= 0)
		cr_assert(k->at[i] <= ARRIVED_BY(k->at[from], x),
			  "line %d at %.3f s, line %d at %.3f s: more than "
			  "%.2f s after it\n%s", i, k->at[i], from,
			  k->at[from], x * SCALE, dump(k));
}

/* ---- "Asyncio Event Loop in Action": processes, then the monitor -------- */

Test(tutorial, processes_gathered_take_the_longest_not_the_sum,
     .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	double t, sum = 0, sync_s, async_s;
	char scan[64], print[64];

	run_ok(&k, "tut_processes", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 8, "%d lines:\n%s", k.nlines, dump(&k));
	/* One after the other: each is done at the sum so far. */
	for (unsigned n = 2; n <= 4; n++) {
		snprintf(scan, sizeof scan,
			 "done process %u - %%lf seconds from start", n);
		snprintf(print, sizeof print,
			 "done process %u - %%.1f seconds from start", n);
		t = line_num(&k, (int)n - 2, scan, print);
		sum += n;
		time_ok(&k, scan, t, sum);
	}
	sync_s = line_num(&k, 3, "SYNC TIME: %lf", "SYNC TIME:  %.1f");
	time_ok(&k, "SYNC TIME", sync_s, 9);
	/* Gathered: each is done its own duration after the common start. */
	for (unsigned n = 2; n <= 4; n++) {
		snprintf(scan, sizeof scan,
			 "done async process %u - %%lf seconds from start", n);
		snprintf(print, sizeof print,
			 "done async process %u - %%.1f seconds from start", n);
		t = line_num(&k, (int)n + 2, scan, print);
		time_ok(&k, scan, t, n);
	}
	async_s = line_num(&k, 7, "ASYNC TIME: %lf", "ASYNC TIME:  %.1f");
	time_ok(&k, "ASYNC TIME", async_s, 4);
	/* In every build: the three waits overlapped. */
	cr_assert(async_s < 0.75 * sync_s, "async %.1f s vs sync %.1f s",
		  async_s, sync_s);
}

/* The monitor's jobs, in the order they start, and their waits. */
static const char *const mon_names[3] = { "cleaning", "reading", "writing" };
static const double mon_secs[3] = { 3, 7, 14 };

Test(tutorial, monitor_reports_every_2s_until_all_jobs_ended,
     .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	double took[3] = { -1, -1, -1 }, up;

	run_ok(&k, "tut_monitor", args, 20 * WT_SLOW);
	/* Eight reports of four lines (the last one empty): at 14 s the
	 * job wakes before the monitor, which sees it done and stops. */
	cr_assert_eq(k.nlines, 32, "%d lines:\n%s", k.nlines, dump(&k));
	for (int r = 0; r < 8; r++) {
		int i = 4 * r;
		char want[256], state[3][32];
		unsigned running = 0;

		up = line_num(&k, i, "uptime: %lf", "uptime: %.2f");
		time_ok(&k, "uptime", up, 2.0 * r);
		for (int j = 0; j < 3; j++) {
			if (2.0 * r < mon_secs[j]) {
				snprintf(state[j], sizeof state[j], "ONGOING");
				running++;
				continue;
			}
			/* Done: read the duration it reports, the same in
			 * every report from here on. */
			const char *p = strstr(k.line[i + 1], mon_names[j]);
			double d;
			cr_assert(p && sscanf(p + strlen(mon_names[j]),
					      "': 'duration: %lf'", &d) == 1,
				  "report %d: %s not done\n%s", r,
				  mon_names[j], dump(&k));
			if (took[j] < 0) {
				time_ok(&k, mon_names[j], d, mon_secs[j]);
				took[j] = d;
			}
			cr_assert_eq(d, took[j], "%s: %.2f, then %.2f\n%s",
				     mon_names[j], took[j], d, dump(&k));
			snprintf(state[j], sizeof state[j], "duration: %.2f", d);
		}
		snprintf(want, sizeof want,
			 "Events in the loop: {'cleaning': '%s', "
			 "'reading': '%s', 'writing': '%s'}",
			 state[0], state[1], state[2]);
		line_is(&k, i + 1, want);
		snprintf(want, sizeof want, "Still running: %u", running);
		line_is(&k, i + 2, want);
		line_is(&k, i + 3, "");
	}
	/* In every build: the three jobs waited side by side, 14 s in all,
	 * not 24. */
	cr_assert(up < 24 * 0.75, "last report at %.2f s\n%s", up, dump(&k));
}

/* ---- "The asyncio Event Loop": random numbers ---------------------------- */

Test(tutorial, random_ten_waits_of_3s_take_3s, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, "-r", "12345", NULL };
	char again[256];
	unsigned v[10];
	double one, ten;
	int n = 0, len;

	run_ok(&k, "tut_random", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 2, "%d lines:\n%s", k.nlines, dump(&k));
	/* "6 took 3.00 seconds" */
	cr_assert_eq(sscanf(k.line[0], "%u took %lf seconds", &v[0], &one), 2,
		     "'%s'", k.line[0]);
	cr_assert(v[0] >= 1 && v[0] <= 10, "'%s'", k.line[0]);
	snprintf(again, sizeof again, "%u took %.2f seconds", v[0], one);
	line_is(&k, 0, again);
	time_ok(&k, "one randn()", one, 3);

	/* "[1, 5, 1, ...] took 3.00 seconds": ten numbers from 1 to 10. */
	const char *p = k.line[1];
	cr_assert_eq(*p, '[', "'%s'", k.line[1]);
	for (p++; n < 10 && sscanf(p, "%u%n", &v[n], &len) == 1; n++) {
		cr_assert(v[n] >= 1 && v[n] <= 10, "'%s'", k.line[1]);
		p += len;
		if (*p == ',')
			p++;
	}
	cr_assert_eq(n, 10, "'%s'", k.line[1]);
	cr_assert_eq(sscanf(p, "] took %lf seconds", &ten), 1, "'%s'",
		     k.line[1]);
	len = 0;
	for (int i = 0; i < 10; i++)
		len += snprintf(again + len, sizeof again - (size_t)len,
				"%s%u", i ? ", " : "[", v[i]);
	snprintf(again + len, sizeof again - (size_t)len,
		 "] took %.2f seconds", ten);
	line_is(&k, 1, again);
	time_ok(&k, "ten randn()", ten, 3);
	/* In every build: less than two waits in a row, let alone ten. */
	cr_assert(ten < 2 * 3, "ten took %.2f s", ten);
}

Test(tutorial, random_same_seed_same_numbers, .timeout = WT_TIMEOUT(30))
{
	static struct kid a, b;
	const char *args[] = { "-s", "0.01", "-r", "777", NULL };
	char *ta, *tb;

	run_ok(&a, "tut_random", args, 10 * WT_SLOW);
	run_ok(&b, "tut_random", args, 10 * WT_SLOW);
	cr_assert_eq(a.nlines, 2);
	cr_assert_eq(b.nlines, 2);
	/* The numbers, up to " took": the times may differ. */
	for (int i = 0; i < 2; i++) {
		ta = strstr(a.line[i], " took");
		tb = strstr(b.line[i], " took");
		cr_assert(ta && tb && ta - a.line[i] == tb - b.line[i] &&
			  !strncmp(a.line[i], b.line[i],
				   (size_t)(ta - a.line[i])),
			  "'%s' vs '%s'", a.line[i], b.line[i]);
	}
}

/* ---- "Understanding AsyncIO by Code" -------------------------------------- */

Test(tutorial, hello_then_world_2s_later, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	static const char *const want[] = { "hello", "world" };

	run_ok(&k, "tut_hello", args, 10 * WT_SLOW);
	lines_are(&k, want, 2);
	arrived(&k, 1, 2, 0);
}

/* "HH:MM:SS" at p: seconds since midnight, or -1. */
static int clock_secs(const char *p)
{
	unsigned h, m, s;
	int len = 0;

	if (sscanf(p, "%2u:%2u:%2u%n", &h, &m, &s, &len) != 3 || len != 8 ||
	    h > 23 || m > 59 || s > 60)
		return -1;
	return (int)(h * 3600 + m * 60 + s);
}

/* The second clock line `end` (its time of day at `e`) is `secs` nominal
 * seconds after the first, `start`: the clock moved by secs, give or take
 * the fraction of a second the start was at. */
static void clocks_ok(struct kid *k, const char *start, const char *end,
		      double secs)
{
	int a = clock_secs(start), b = clock_secs(end), d;

	cr_assert(a >= 0 && b >= 0, "'%s', '%s'\n%s", start, end, dump(k));
	d = (b - a + 86400) % 86400;
	cr_assert(d >= (int)secs && d <= (int)secs + 1,
		  "clock from %.8s to %.8s, %.4f s apart\n%s", start, end, secs,
		  dump(k));
}

Test(tutorial, create_task_start_end_2s_apart, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	char again[64];
	double secs;

	run_ok(&k, "tut_create_task", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 2, "%d lines:\n%s", k.nlines, dump(&k));
	/* "Start: 17:19:30" / "End: 17:19:32 (2.0017 sec)" */
	cr_assert(!strncmp(k.line[0], "Start: ", 7) &&
		  strlen(k.line[0]) == 15, "'%s'", k.line[0]);
	cr_assert(!strncmp(k.line[1], "End: ", 5), "'%s'", k.line[1]);
	cr_assert_eq(sscanf(k.line[1] + 5, "%*8s (%lf sec)", &secs), 1, "'%s'",
		     k.line[1]);
	snprintf(again, sizeof again, "End: %.8s (%.4f sec)", k.line[1] + 5,
		 secs);
	line_is(&k, 1, again);
	clocks_ok(&k, k.line[0] + 7, k.line[1] + 5, secs);
	time_ok(&k, "create_task", secs, 2);
	/* In every build: the 2 s and 1 s waits overlapped. */
	cr_assert(secs < 3, "%.4f s: not side by side", secs);
}

Test(tutorial, gather_returns_the_list_in_2s, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	char again[64];
	double secs;

	run_ok(&k, "tut_gather", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 3, "%d lines:\n%s", k.nlines, dump(&k));
	/* "17:10:30" / "['hello(2)', 'world(1)']" / "17:10:32 (2.0018 sec)" */
	cr_assert_eq(strlen(k.line[0]), 8, "'%s'", k.line[0]);
	line_is(&k, 1, "['hello(2)', 'world(1)']");
	cr_assert_eq(sscanf(k.line[2], "%*8s (%lf sec)", &secs), 1, "'%s'",
		     k.line[2]);
	snprintf(again, sizeof again, "%.8s (%.4f sec)", k.line[2], secs);
	line_is(&k, 2, again);
	clocks_ok(&k, k.line[0], k.line[2], secs);
	time_ok(&k, "gather", secs, 2);
	cr_assert(secs < 3, "%.4f s: not side by side", secs);
}

/* ---- "Asyncio Event Loops Tutorial" --------------------------------------- */

Test(tutorial, my_coroutine_runs_until_complete, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	static const char *const want[] = { "My Coroutine" };

	run_ok(&k, "tut_my_coroutine", args, 10 * WT_SLOW);
	lines_are(&k, want, 1);
}

Test(tutorial, my_work_finishes_after_5s, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	static const char *const want[] = { "Starting Work", "Finishing Work" };

	run_ok(&k, "tut_my_work", args, 10 * WT_SLOW);
	lines_are(&k, want, 2);
	arrived(&k, 1, 5, 0);
}

/* Output of a run_forever program: `worker` lines only (either text when
 * `other` is not NULL), then one "Closing Loop", last. */
static void forever_check(struct kid *k, const char *worker,
			  const char *other, int max_each)
{
	int first = count_lines(k, worker);
	int second = other ? count_lines(k, other) : 2;

	cr_assert(WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0,
		  "status 0x%x; output:\n%s", k->status, dump(k));
	cr_assert_gt(k->nlines, 0);
	/* "Closing Loop" once, and last: no worker prints after it. */
	cr_assert_str_eq(k->line[k->nlines - 1], "Closing Loop", "\n%s",
			 dump(k));
	cr_assert_eq(count_lines(k, "Closing Loop"), 1);
	cr_assert_eq(first + (other ? second : 0) + 1, k->nlines,
		     "unexpected lines:\n%s", dump(k));
	cr_assert(first >= 2 && second >= 2, "%d and %d lines\n%s", first,
		  second, dump(k));
	if (max_each > 0)
		cr_assert(first <= max_each && second <= max_each,
			  "%d and %d lines (at most %d each)\n%s", first,
			  second, max_each, dump(k));
}

Test(tutorial, work_forever_stops_after_t_seconds, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", "0.05", "-t", "0.5", NULL };

	run_ok(&k, "tut_work_forever", args, 10 * WT_SLOW);
	/* A line every 0.05 s and a stop at 0.5 s: 10, one more if a tick
	 * and the stop meet; sanitizers may delay the stop. */
	forever_check(&k, "Task Executed", NULL,
		      WT_SLOW == 1 ? 11 : 11 + 4 * WT_SLOW);
	cr_assert(k.secs >= 0.5 && k.secs < 0.5 + 2.0 * WT_SLOW,
		  "ran %.2f s", k.secs);
}

Test(tutorial, forever_stops_after_t_seconds, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", "0.05", "-t", "0.5", NULL };

	run_ok(&k, "tut_forever", args, 10 * WT_SLOW);
	forever_check(&k, "First Worker Executed", "Second Worker Executed",
		      WT_SLOW == 1 ? 11 : 11 + 4 * WT_SLOW);
	cr_assert(k.secs >= 0.5 && k.secs < 0.5 + 2.0 * WT_SLOW,
		  "ran %.2f s", k.secs);
}

Test(tutorial, forever_sigint_closes_the_loop, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", "0.05", NULL };
	uint64_t sent;

	kid_start(&k, "tut_forever", args);
	/* Wait until the loop runs (a worker has printed), so the signal
	 * meets the runtime's handler and not the default action. */
	int r = kid_read(&k, "Worker Executed\n", 5.0 * WT_SLOW);
	if (r != 1)
		kill(k.pid, SIGKILL);
	cr_assert_eq(r, 1, "no worker line; output:\n%s", k.out);
	wt_sleep_ms(300);
	sent = wt_now_ns();
	cr_assert_eq(kill(k.pid, SIGINT), 0);
	kid_finish(&k, 5.0 * WT_SLOW);
	double stop_s = (double)(wt_now_ns() - sent) / 1e9;
	forever_check(&k, "First Worker Executed", "Second Worker Executed", 0);
	/* The workers are cancelled, not waited out. */
	cr_assert_lt(stop_s, 1.0 * WT_SLOW, "%.2f s from SIGINT to exit",
		     stop_s);
}

/* ---- "Python: AsyncIO" ---------------------------------------------------- */

Test(tutorial, hello_world_then_5s_wait, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	static const char *const want[] = { "Hello World!",
					    "I just waited for 5 seconds!" };

	run_ok(&k, "tut_hello_world", args, 10 * WT_SLOW);
	lines_are(&k, want, 2);
	arrived(&k, 1, 5, 0);
}

Test(tutorial, await_task_first_then_second, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	static const char *const want[] = { "This goes first!",
					    "This goes second, after waiting!" };

	run_ok(&k, "tut_await_task", args, 10 * WT_SLOW);
	lines_are(&k, want, 2);
	arrived(&k, 1, 2, 0);
}

Test(tutorial, order_first_second_third_fourth, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	static const char *const want[] = { "This goes first!",
					    "This goes second!",
					    "This goes third!",
					    "This goes fourth!" };

	run_ok(&k, "tut_order", args, 10 * WT_SLOW);
	lines_are(&k, want, 4);
	/* first and second at once; third after main's 2 s; fourth after
	 * foo's 2 s, which overlapped main's (in turn they would make 4). */
	arrived(&k, 1, 0, 0);
	arrived(&k, 2, 2, 0);
	arrived(&k, 3, 2, 0);
	cr_assert(k.at[3] < k.at[0] + 3 * SCALE, "fourth at %.3f s\n%s",
		  k.at[3], dump(&k));
}

Test(tutorial, coffee_and_bagel_done_together, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };

	run_ok(&k, "tut_coffee", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 4, "%d lines:\n%s", k.nlines, dump(&k));
	line_is(&k, 0, "Start brewing coffee...");
	line_is(&k, 1, "Start toasting bagel...");
	/* The two 3 s waits end in the same instant: either may print
	 * first (tut_coffee.c says why), but each exactly once. */
	cr_assert(count_lines(&k, "Done brewing coffee.") == 1 &&
		  count_lines(&k, "Done toasting bagel.") == 1, "\n%s",
		  dump(&k));
	arrived(&k, 2, 3, 0);
	arrived(&k, 3, 3, 0);
	/* In every build: side by side, not 6 s in turn. */
	cr_assert(k.at[3] < k.at[0] + 2 * 3 * SCALE, "done at %.3f s\n%s",
		  k.at[3], dump(&k));
}

/* ---- all: a bad option is refused ---------------------------------------- */

Test(tutorial, bad_scale_is_a_usage_error, .timeout = WT_TIMEOUT(30))
{
	static const char *const progs[] = {
		"tut_processes", "tut_monitor", "tut_random", "tut_hello",
		"tut_create_task", "tut_gather", "tut_my_coroutine",
		"tut_my_work", "tut_work_forever", "tut_forever",
		"tut_hello_world", "tut_await_task", "tut_order", "tut_coffee",
	};
	const char *args[] = { "-s", "-1", NULL };

	for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
		static struct kid k;
		kid_start(&k, progs[i], args);
		kid_finish(&k, 5.0 * WT_SLOW);
		cr_assert(WIFEXITED(k.status) && WEXITSTATUS(k.status) == 2,
			  "%s -s -1: status 0x%x\n%s", progs[i], k.status,
			  k.out);
		cr_assert(strstr(k.out, "usage:"), "%s:\n%s", progs[i], k.out);
	}
}
