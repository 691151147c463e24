/*
 * The six tutorial programs (examples/tut_*.c), run as child processes
 * with their durations scaled down (-s), their standard output (and
 * error) read through a pipe and checked: the lines come in the order the
 * tutorial promises, and the times they print keep the relations that
 * show the tasks really waited side by side (gathered total close to the
 * longest job, clearly less than the sequential sum).
 *
 * Times printed have two decimals, so every lower bound allows half a
 * hundredth for rounding (LO); a sleep never ends early, so no more is
 * needed. Upper bounds are 1.3 times the expected time in plain builds
 * and more under sanitizers (HI), but the relations that prove
 * parallelism are asserted in every build.
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

/* Bounds on a printed time t that should be `x` seconds. */
#define LO(x) ((x) - 0.006)
#define HI(x) ((x) * 1.3 + 0.01 + (WT_SLOW > 1 ? 0.05 * WT_SLOW : 0))

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

/* ---- 1: sequential and gathered processes ------------------------------ */

/* Parses "done X (N s): T seconds from start" at line i. */
static void done_line(struct kid *k, int i, char name, unsigned secs,
		      double *t)
{
	char got;
	unsigned n;

	cr_assert(i >= 0 && i < k->nlines, "missing line %d:\n%s", i, dump(k));
	cr_assert_eq(sscanf(k->line[i], "done %c (%u s): %lf seconds from start",
			    &got, &n, t), 3, "line %d: '%s'\n%s", i,
		     k->line[i], dump(k));
	cr_assert(got == name && n == secs, "line %d: '%s', wanted %c\n%s", i,
		  k->line[i], name, dump(k));
}

Test(tutorial, processes_gathered_take_the_longest_not_the_sum,
     .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	const char names[3] = { 'A', 'B', 'C' };
	const unsigned secs[3] = { 2, 3, 4 };
	double t, seq, gath;
	int i;

	run_ok(&k, "tut_processes", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 10, "%d lines:\n%s", k.nlines, dump(&k));
	cr_assert_str_eq(k.line[0], "sequential:");
	/* Sequential: each is done its own duration after the previous. */
	double sum = 0;
	for (i = 0; i < 3; i++) {
		done_line(&k, 1 + i, names[i], secs[i], &t);
		sum += secs[i] * SCALE;
		cr_assert(t >= LO(sum) && t <= HI(sum),
			  "sequential %c at %.2f s, expected %.2f\n%s",
			  names[i], t, sum, dump(&k));
	}
	cr_assert_eq(sscanf(k.line[4], "sequential total: %lf seconds", &seq),
		     1, "'%s'", k.line[4]);
	cr_assert(seq >= LO(9 * SCALE) && seq <= HI(9 * SCALE),
		  "sequential total %.2f s\n%s", seq, dump(&k));

	/* Gathered: each is done its own duration after the common start. */
	cr_assert_str_eq(k.line[5], "gathered:");
	for (i = 0; i < 3; i++) {
		done_line(&k, 6 + i, names[i], secs[i], &t);
		cr_assert(t >= LO(secs[i] * SCALE) && t <= HI(secs[i] * SCALE),
			  "gathered %c at %.2f s, expected %.2f\n%s", names[i],
			  t, secs[i] * SCALE, dump(&k));
	}
	cr_assert_eq(sscanf(k.line[9], "gathered total: %lf seconds", &gath),
		     1, "'%s'", k.line[9]);
	cr_assert(gath >= LO(4 * SCALE) && gath <= HI(4 * SCALE),
		  "gathered total %.2f s\n%s", gath, dump(&k));
	/* In every build: the three waits overlapped. */
	cr_assert(gath < 0.75 * seq, "gathered %.2f s vs sequential %.2f s",
		  gath, seq);
}

/* ---- 2: ten random numbers ---------------------------------------------- */

Test(tutorial, random_ten_waits_of_3s_take_3s, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, "-r", "12345", NULL };
	unsigned idx, val;
	double total;

	run_ok(&k, "tut_random", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 11, "%d lines:\n%s", k.nlines, dump(&k));
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(sscanf(k.line[i], "task %u returned %u", &idx,
				    &val), 2, "'%s'", k.line[i]);
		cr_assert(idx == (unsigned)i && val < 100, "'%s'", k.line[i]);
	}
	cr_assert_eq(sscanf(k.line[10], "total: %lf s", &total), 1, "'%s'",
		     k.line[10]);
	cr_assert(total >= LO(3 * SCALE) && total <= HI(3 * SCALE),
		  "total %.2f s\n%s", total, dump(&k));
	/* In every build: less than two waits in a row, let alone ten. */
	cr_assert(total < 2 * 3 * SCALE, "total %.2f s", total);
}

Test(tutorial, random_same_seed_same_numbers, .timeout = WT_TIMEOUT(30))
{
	static struct kid a, b;
	const char *args[] = { "-s", "0.01", "-r", "777", NULL };

	run_ok(&a, "tut_random", args, 10 * WT_SLOW);
	run_ok(&b, "tut_random", args, 10 * WT_SLOW);
	cr_assert_eq(a.nlines, 11);
	cr_assert_eq(b.nlines, 11);
	for (int i = 0; i < 10; i++)
		cr_assert_str_eq(a.line[i], b.line[i]);
}

/* ---- 3: the status monitor ---------------------------------------------- */

struct mon_line {
	double uptime;
	int done[3];    /* 0: ONGOING */
	double took[3]; /* when done */
	unsigned running;
};

static const char *const mon_names[3] = { "cleaning", "reading", "writing" };
static const double mon_secs[3] = { 3, 7, 14 };

/* Parses "uptime U s | cleaning S | reading S | writing S | running N",
 * S being ONGOING or a duration. */
static void mon_parse(struct kid *k, int i, struct mon_line *m)
{
	char buf[256], *save = NULL, *f;
	int field = 0;

	snprintf(buf, sizeof buf, "%s", k->line[i]);
	for (f = strtok_r(buf, "|", &save); f; f = strtok_r(NULL, "|", &save),
	    field++) {
		char name[32], state[32];

		while (*f == ' ')
			f++;
		if (field == 0) {
			cr_assert_eq(sscanf(f, "uptime %lf s", &m->uptime), 1,
				     "'%s'", k->line[i]);
		} else if (field <= 3) {
			cr_assert_eq(sscanf(f, "%31s %31s", name, state), 2,
				     "'%s'", k->line[i]);
			cr_assert_str_eq(name, mon_names[field - 1], "'%s'",
					 k->line[i]);
			m->done[field - 1] = strcmp(state, "ONGOING") != 0;
			if (m->done[field - 1])
				cr_assert_eq(sscanf(state, "%lf",
						    &m->took[field - 1]), 1,
					     "'%s'", k->line[i]);
		} else {
			cr_assert_eq(sscanf(f, "running %u", &m->running), 1,
				     "'%s'", k->line[i]);
		}
	}
	cr_assert_eq(field, 5, "'%s'", k->line[i]);
}

Test(tutorial, monitor_reports_every_tick_until_all_jobs_ended,
     .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	const double tick = 2 * SCALE;
	struct mon_line m, prev;
	int n = 0, fin[3] = { -1, -1, -1 };

	run_ok(&k, "tut_monitor", args, 20 * WT_SLOW);
	for (int i = 0; i < k.nlines; i++) {
		if (!strncmp(k.line[i], "uptime ", 7)) {
			memset(&m, 0, sizeof m);
			mon_parse(&k, i, &m);
			/* Tick n, never early, and on time give or take. */
			cr_assert(m.uptime >= LO(n * tick) &&
				  m.uptime <= HI(n * tick) + 0.02,
				  "tick %d at %.2f s\n%s", n, m.uptime, dump(&k));
			unsigned ongoing = 0;
			for (int j = 0; j < 3; j++) {
				ongoing += !m.done[j];
				/* The first report sees every job ONGOING;
				 * a job once done stays done, same time. */
				if (n == 0)
					cr_assert(!m.done[j], "'%s'", k.line[i]);
				else if (prev.done[j])
					cr_assert(m.done[j] &&
						  m.took[j] == prev.took[j],
						  "'%s'\n%s", k.line[i],
						  dump(&k));
				if (m.done[j])
					cr_assert(m.took[j] >= LO(mon_secs[j] * SCALE) &&
						  m.took[j] <= HI(mon_secs[j] * SCALE),
						  "%s took %.2f s\n%s",
						  mon_names[j], m.took[j],
						  dump(&k));
				/* Not reported done before it could be. */
				if (m.done[j])
					cr_assert(m.uptime >= LO(mon_secs[j] * SCALE),
						  "'%s'", k.line[i]);
			}
			/* The table is read under the lock in one step: the
			 * count agrees with the states. */
			cr_assert_eq(m.running, ongoing, "'%s'", k.line[i]);
			/* Only the last report may find none running. */
			if (n > 0)
				cr_assert_gt(prev.running, 0, "report after the "
					     "last:\n%s", dump(&k));
			prev = m;
			n++;
		} else {
			double took;
			char name[32];
			cr_assert_eq(sscanf(k.line[i], "%31s finished after %lf s",
					    name, &took), 2, "'%s'", k.line[i]);
			int j;
			for (j = 0; j < 3 && strcmp(name, mon_names[j]); j++)
				;
			cr_assert_lt(j, 3, "'%s'", k.line[i]);
			cr_assert_eq(fin[j], -1, "twice: '%s'", k.line[i]);
			fin[j] = i;
		}
	}
	/* Jobs finish in order of their durations. */
	cr_assert(fin[0] >= 0 && fin[0] < fin[1] && fin[1] < fin[2],
		  "finished lines out of order:\n%s", dump(&k));
	/* The monitor ends at the first tick after "writing" (14 s): the
	 * tick at 14 s if it already saw it done, else the one at 16 s. */
	cr_assert_eq(prev.running, 0, "\n%s", dump(&k));
	cr_assert(n == 8 || n == 9, "%d reports\n%s", n, dump(&k));
	cr_assert(prev.uptime >= LO(14 * SCALE), "\n%s", dump(&k));
}

/* ---- 4: the loop that runs forever ---------------------------------------- */

static void forever_check(struct kid *k, int max_each)
{
	int first = count_lines(k, "First Worker Executed");
	int second = count_lines(k, "Second Worker Executed");

	cr_assert(WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0,
		  "status 0x%x; output:\n%s", k->status, dump(k));
	cr_assert_gt(k->nlines, 0);
	/* "Closing Loop" once, and last: no worker prints after it. */
	cr_assert_str_eq(k->line[k->nlines - 1], "Closing Loop", "\n%s",
			 dump(k));
	cr_assert_eq(count_lines(k, "Closing Loop"), 1);
	cr_assert_eq(first + second + 1, k->nlines,
		     "unexpected lines:\n%s", dump(k));
	cr_assert(first >= 2 && second >= 2, "first %d, second %d\n%s", first,
		  second, dump(k));
	if (max_each > 0)
		cr_assert(first <= max_each && second <= max_each,
			  "first %d, second %d (at most %d each)\n%s", first,
			  second, max_each, dump(k));
}

Test(tutorial, forever_stops_after_t_seconds, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", "0.05", "-t", "0.5", NULL };

	run_ok(&k, "tut_forever", args, 10 * WT_SLOW);
	/* A tick every 0.05 s and a stop at 0.5 s: 10 each, one more if a
	 * tick and the stop meet; sanitizers may delay the stop. */
	forever_check(&k, WT_SLOW == 1 ? 11 : 11 + 4 * WT_SLOW);
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
	forever_check(&k, 0);
	/* The workers are cancelled, not waited out. */
	cr_assert_lt(stop_s, 1.0 * WT_SLOW, "%.2f s from SIGINT to exit",
		     stop_s);
}

/* ---- 5: create_task ordering -------------------------------------------- */

Test(tutorial, order_first_second_third_fourth, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	const char *const want[4] = { "This goes first", "This goes second",
				      "This goes third", "This goes fourth!" };
	double t[4];

	run_ok(&k, "tut_order", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 4, "%d lines:\n%s", k.nlines, dump(&k));
	for (int i = 0; i < 4; i++) {
		size_t n = strlen(want[i]);
		cr_assert(!strncmp(k.line[i], want[i], n) &&
			  sscanf(k.line[i] + n, " (%lf s)", &t[i]) == 1,
			  "line %d: '%s', wanted '%s (T s)'\n%s", i, k.line[i],
			  want[i], dump(&k));
	}
	/* first and second at once; third after main's 1 s, while the
	 * helper still sleeps; fourth after the helper's 2 s, which
	 * overlapped main's sleep (the sum would be 3 s). */
	cr_assert(t[0] <= HI(0) && t[1] <= HI(0), "\n%s", dump(&k));
	cr_assert(t[2] >= LO(1 * SCALE) && t[2] < 2 * SCALE, "\n%s", dump(&k));
	cr_assert(t[3] >= LO(2 * SCALE) && t[3] <= HI(2 * SCALE), "\n%s",
		  dump(&k));
	cr_assert(t[3] < 3 * SCALE, "\n%s", dump(&k));
}

/* ---- 6: coffee and bagel ------------------------------------------------ */

Test(tutorial, coffee_and_bagel_ready_together, .timeout = WT_TIMEOUT(30))
{
	static struct kid k;
	const char *args[] = { "-s", SCALE_ARG, NULL };
	double total;

	run_ok(&k, "tut_coffee", args, 10 * WT_SLOW);
	cr_assert_eq(k.nlines, 3, "%d lines:\n%s", k.nlines, dump(&k));
	cr_assert_str_eq(k.line[0], "Coffee is ready");
	cr_assert_str_eq(k.line[1], "Bagel is ready");
	cr_assert_eq(sscanf(k.line[2], "total: %lf s", &total), 1, "'%s'",
		     k.line[2]);
	cr_assert(total >= LO(3 * SCALE) && total <= HI(3 * SCALE),
		  "total %.2f s", total);
	cr_assert(total < 2 * 3 * SCALE, "total %.2f s: not side by side",
		  total);
}

/* ---- all: a bad option is refused ---------------------------------------- */

Test(tutorial, bad_scale_is_a_usage_error, .timeout = WT_TIMEOUT(30))
{
	static const char *const progs[] = { "tut_processes", "tut_random",
					     "tut_monitor", "tut_forever",
					     "tut_order", "tut_coffee" };
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
