/*
 * Subprocesses: spawning with pipes, /dev/null, a working directory and an
 * environment; return codes for exits and signals; waits that time out or
 * are cancelled; two waiters on one child; exec errors from
 * weft_proc_spawn(); destroy killing and reaping a running child; fifty
 * children at once on four workers; the child's signal state.
 *
 * Every test checks that no child process is left (no zombie: waitpid()
 * for any child says ECHILD) and that as many descriptors are open after
 * it as before.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "weft_test.h"

WT_SUITE(proc, 60);

/* ---- helpers ------------------------------------------------------------- */

/* No child of ours exists, running or zombie. */
static void assert_no_children(void)
{
	int st;
	pid_t r = waitpid(-1, &st, WNOHANG);

	cr_assert(r == -1 && errno == ECHILD,
		  "a child is left (waitpid = %d, errno %d)", (int)r, errno);
}

/* Reads fd to end of file into buf (NUL-terminated); returns the length,
 * -ENOBUFS if it does not fit, or the read's error. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	for (;;) {
		ssize_t n;

		if (got + 1 >= cap)
			return -ENOBUFS;
		n = weft_read(fd, buf + got, cap - 1 - got, -1);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

/* Runs argv with flags (and opts' cwd, envp), collects stdout (and stderr
 * when piped) and the return code. Returns the spawn or wait error, or 0. */
struct outcome {
	char out[4096];
	char err[4096];
	ssize_t out_len, err_len;
	int code;
};

static int run_collect(char *const argv[], const struct weft_proc_opts *o,
		       struct outcome *res)
{
	weft_proc *p;
	int rc = weft_proc_spawn(&p, argv, o);

	memset(res, 0, sizeof(*res));
	res->code = INT_MIN;
	if (rc)
		return rc;
	res->out_len = res->err_len = -1;
	if (weft_proc_stdout(p) >= 0)
		res->out_len = read_all(weft_proc_stdout(p), res->out,
					sizeof(res->out));
	if (weft_proc_stderr(p) >= 0)
		res->err_len = read_all(weft_proc_stderr(p), res->err,
					sizeof(res->err));
	rc = weft_proc_wait(p, &res->code);
	weft_proc_destroy(p);
	return rc;
}

#define SH(script) ((char *const[]){ "/bin/sh", "-c", (script), NULL })

/* Runs main_fn with each worker count, checking descriptors and children
 * around the lot. */
static void run_counts(weft_fn fn, void *arg, const unsigned *counts,
		       size_t n)
{
	int fds = fd_count();

	for (size_t i = 0; i < n; i++)
		wt_run(fn, arg, counts[i]);
	cr_assert_eq(fd_count(), fds, "descriptors leaked");
	assert_no_children();
}

static const unsigned one_and_four[] = { 1, 4 };

/* ---- output, input, return codes ----------------------------------------- */

static void *echo_main(void *arg)
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT |
					     WEFT_PROC_SEARCH_PATH };
	struct outcome r;

	(void)arg;
	WT_CHECK_EQ(run_collect((char *const[]){ "echo", "hello", NULL }, &o,
				&r),
		    0);
	WT_CHECK_EQ(r.out_len, 6);
	WT_CHECK(strcmp(r.out, "hello\n") == 0);
	WT_CHECK_EQ(r.err_len, -1); /* not piped */
	WT_CHECK_EQ(r.code, 0);
	return NULL;
}

Test(proc, echo_hello_is_read_from_stdout_and_returns_0,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(echo_main, NULL, one_and_four, 2);
}

#define CAT_BYTES (1u << 20)

struct cat_io {
	weft_proc *p;
	uint8_t *data;
	ssize_t written;
	int close_rc;
};

static void *cat_writer(void *arg)
{
	struct cat_io *c = arg;

	c->written = weft_write_all(weft_proc_stdin(c->p), c->data, CAT_BYTES,
				    -1);
	c->close_rc = weft_proc_close_stdin(c->p);
	return NULL;
}

static void *cat_main(void *arg)
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDIN |
					     WEFT_PROC_STDOUT };
	struct cat_io c = { 0 };
	uint8_t *back = malloc(CAT_BYTES + 1);
	weft_task *w;
	size_t got = 0;
	int code = INT_MIN;

	(void)arg;
	c.data = malloc(CAT_BYTES);
	if (!WT_CHECK(c.data && back))
		goto out;
	for (size_t i = 0; i < CAT_BYTES; i++)
		c.data[i] = (uint8_t)((i * 2654435761u) >> 13);
	if (!WT_CHECK_EQ(weft_proc_spawn(&c.p, (char *const[]){ "/bin/cat",
								 NULL },
					 &o),
			 0))
		goto out;
	WT_CHECK(weft_proc_stdin(c.p) >= 0);
	WT_CHECK(weft_proc_stdout(c.p) >= 0);
	WT_CHECK_EQ(weft_proc_stderr(c.p), -1);
	/* Both directions at once: the pipes hold 64 KiB each, so writing
	 * it all before reading would deadlock with cat. */
	w = weft_spawn(cat_writer, &c);
	WT_CHECK(w != NULL);
	for (;;) {
		ssize_t n = weft_read(weft_proc_stdout(c.p), back + got,
				      CAT_BYTES + 1 - got, -1);
		if (!WT_CHECK(n >= 0) || n == 0)
			break;
		got += (size_t)n;
		if (got > CAT_BYTES)
			break;
	}
	if (w) {
		WT_CHECK_EQ(weft_await(w, NULL), 0);
		weft_task_release(w);
	}
	WT_CHECK_EQ(c.written, CAT_BYTES);
	WT_CHECK_EQ(c.close_rc, 0);
	WT_CHECK_EQ(weft_proc_stdin(c.p), -1);
	WT_CHECK_EQ(weft_proc_close_stdin(c.p), -EBADF); /* already */
	WT_CHECK_EQ(got, CAT_BYTES);
	WT_CHECK(memcmp(back, c.data, CAT_BYTES) == 0);
	WT_CHECK_EQ(weft_proc_wait(c.p, &code), 0);
	WT_CHECK_EQ(code, 0);
	weft_proc_destroy(c.p);
out:
	free(c.data);
	free(back);
	return NULL;
}

Test(proc, cat_round_trips_one_mib_through_stdin_and_stdout,
     .timeout = WT_TIMEOUT(20))
{
	run_counts(cat_main, NULL, one_and_four, 2);
}

static void *codes_main(void *arg)
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT };
	struct outcome r;

	(void)arg;
	WT_CHECK_EQ(run_collect(SH("exit 7"), &o, &r), 0);
	WT_CHECK_EQ(r.code, 7);
	WT_CHECK_EQ(run_collect(SH("exit 255"), &o, &r), 0);
	WT_CHECK_EQ(r.code, 255);
	WT_CHECK_EQ(run_collect(SH("kill -KILL $$"), &o, &r), 0);
	WT_CHECK_EQ(r.code, -SIGKILL);
	/* No stream piped at all: inherited, and still waited for. */
	WT_CHECK_EQ(run_collect(SH("exit 3"), NULL, &r), 0);
	WT_CHECK_EQ(r.code, 3);
	return NULL;
}

Test(proc, exit_statuses_and_signals_become_asyncio_return_codes,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(codes_main, NULL, one_and_four, 2);
}

static void *stderr_main(void *arg)
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT |
					     WEFT_PROC_STDERR };
	struct outcome r;

	(void)arg;
	WT_CHECK_EQ(run_collect(SH("echo err >&2"), &o, &r), 0);
	WT_CHECK_EQ(r.out_len, 0);
	WT_CHECK_EQ(r.err_len, 4);
	WT_CHECK(strcmp(r.err, "err\n") == 0);
	WT_CHECK_EQ(r.code, 0);

	/* Merged: both streams arrive through the stdout pipe, in order. */
	o.flags = WEFT_PROC_STDOUT | WEFT_PROC_STDERR_TO_STDOUT;
	WT_CHECK_EQ(run_collect(SH("echo out; echo err >&2; echo out2"), &o,
				&r),
		    0);
	WT_CHECK(strcmp(r.out, "out\nerr\nout2\n") == 0);
	WT_CHECK_EQ(r.err_len, -1); /* no stderr pipe */
	WT_CHECK_EQ(r.code, 0);
	return NULL;
}

Test(proc, stderr_is_piped_alone_or_merged_into_stdout,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(stderr_main, NULL, one_and_four, 2);
}

/* ---- /dev/null, cwd, environment ----------------------------------------- */

static void *devnull_main(void *arg)
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT |
					     WEFT_PROC_DEVNULL };
	struct outcome r;

	(void)arg;
	/* What the child has as fds 0 and 2, and that stdin reads empty. */
	WT_CHECK_EQ(run_collect(SH("readlink /proc/$$/fd/0 /proc/$$/fd/2;"
				   " cat; echo end"),
				&o, &r),
		    0);
	WT_CHECK(strcmp(r.out, "/dev/null\n/dev/null\nend\n") == 0);
	WT_CHECK_EQ(r.code, 0);

	/* The shell's own stdin and stdout, with stderr piped. (A probe
	 * with its stdout redirected would not do: dash redirects in the
	 * shell itself for the length of the command.) */
	o.flags = WEFT_PROC_STDERR | WEFT_PROC_DEVNULL;
	WT_CHECK_EQ(run_collect(SH("x=$(readlink /proc/$$/fd/0 /proc/$$/fd/1);"
				   " echo \"$x\" >&2"),
				&o, &r),
		    0);
	WT_CHECK(strcmp(r.err, "/dev/null\n/dev/null\n") == 0);
	WT_CHECK_EQ(r.code, 0);
	return NULL;
}

Test(proc, devnull_stands_in_for_streams_not_piped,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(devnull_main, NULL, one_and_four, 1);
}

struct cwd_env {
	char dir[PATH_MAX];
	char real[PATH_MAX];
};

static void *cwd_env_main(void *arg)
{
	struct cwd_env *ce = arg;
	char *env[] = { "FOO=bar baz", "PATH=/usr/bin:/bin", NULL };
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT,
				    .envp = env,
				    .cwd = ce->dir };
	struct outcome r;
	char want[PATH_MAX + 32];

	WT_CHECK_EQ(run_collect(SH("pwd -P; echo \"$FOO\"; echo ${HOME-unset}"),
				&o, &r),
		    0);
	snprintf(want, sizeof(want), "%s\nbar baz\nunset\n", ce->real);
	WT_CHECK(strcmp(r.out, want) == 0);
	WT_CHECK_EQ(r.code, 0);

	/* A relative program is looked up from cwd. */
	WT_CHECK_EQ(run_collect((char *const[]){ "./prog", NULL }, &o, &r), 0);
	WT_CHECK(strcmp(r.out, "from prog\n") == 0);
	WT_CHECK_EQ(r.code, 4);

	/* A cwd that does not exist fails the spawn, nothing is left. */
	o.cwd = "/nonexistent-weft-dir";
	WT_CHECK_EQ(run_collect(SH("exit 0"), &o, &r), -ENOENT);
	return NULL;
}

Test(proc, cwd_and_envp_are_honoured, .timeout = WT_TIMEOUT(10))
{
	struct cwd_env ce;
	const char *base = getenv("TMPDIR");
	char prog[PATH_MAX + 8];
	FILE *f;

	if (!base || !*base)
		base = "/tmp";
	snprintf(ce.dir, sizeof(ce.dir), "%s/weft-proc-XXXXXX", base);
	cr_assert_not_null(mkdtemp(ce.dir));
	cr_assert_not_null(realpath(ce.dir, ce.real));
	snprintf(prog, sizeof(prog), "%s/prog", ce.dir);
	f = fopen(prog, "w");
	cr_assert_not_null(f);
	fputs("#!/bin/sh\necho from prog\nexit 4\n", f);
	fclose(f);
	cr_assert_eq(chmod(prog, 0755), 0);
	run_counts(cwd_env_main, &ce, one_and_four, 1);
	unlink(prog);
	cr_assert_eq(rmdir(ce.dir), 0);
}

/* ---- signals, deadlines, cancellation ------------------------------------ */

static char *const sleep10[] = { "sleep", "10", NULL };
static const struct weft_proc_opts sleep_opts = {
	.flags = WEFT_PROC_SEARCH_PATH | WEFT_PROC_DEVNULL
};

/* One child killed by SIGTERM; returns how long its wait took after the
 * kill (the kernel ends it at once; its pidfd then reports it). */
static uint64_t sigterm_try(void)
{
	weft_proc *p;
	uint64_t t0, took;
	int code = INT_MIN;
	pid_t pid;

	if (!WT_CHECK_EQ(weft_proc_spawn(&p, sleep10, &sleep_opts), 0))
		return 0;
	pid = weft_proc_pid(p);
	WT_CHECK(pid > 0);
	WT_CHECK_EQ(getpgid(pid), getpgid(0)); /* a process, of ours */
	WT_CHECK_EQ(weft_proc_stdin(p), -1);
	WT_CHECK_EQ(weft_proc_stdout(p), -1);
	WT_CHECK_EQ(weft_proc_close_stdin(p), -EBADF);
	WT_CHECK_EQ(weft_proc_kill(p, 0), 0); /* alive */
	t0 = weft_now();
	WT_CHECK_EQ(weft_proc_kill(p, SIGTERM), 0);
	WT_CHECK_EQ(weft_proc_wait(p, &code), 0);
	took = weft_now() - t0;
	CHECK_BELOW(took, PROMPT_NS);
	WT_CHECK_EQ(code, -SIGTERM);
	/* Reaped: the code stays, signals are refused. */
	code = 0;
	WT_CHECK_EQ(weft_proc_wait(p, &code), 0);
	WT_CHECK_EQ(code, -SIGTERM);
	WT_CHECK_EQ(weft_proc_kill(p, SIGTERM), -ESRCH);
	/* The pid stays readable after the reap (for logs). */
	WT_CHECK_EQ(weft_proc_pid(p), pid);
	weft_proc_destroy(p);
	return took;
}

static void *sigterm_main(void *arg)
{
	uint64_t took = WT_BEST_OF(WT_TRIES, QUICK_NS, sigterm_try());

	(void)arg;
	CHECK_BELOW(took, QUICK_NS);
	return NULL;
}

Test(proc, sigterm_ends_a_sleeping_child_with_minus_15,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(sigterm_main, NULL, one_and_four, 2);
}

/* A wait in a 50 ms deadline scope for a child that keeps running;
 * returns how late it timed out. */
static uint64_t proc_deadline_try(weft_proc *p)
{
	uint64_t t0 = weft_now(), saved, e;
	int code = INT_MIN;

	saved = weft_timeout_begin(50 * MS);
	WT_CHECK_EQ(weft_proc_wait(p, &code), -ETIMEDOUT);
	weft_timeout_end(saved);
	e = weft_now() - t0;
	CHECK_NOT_EARLY(e, 50 * MS);
	CHECK_BELOW(e, 50 * MS + PROMPT_NS);
	WT_CHECK_EQ(code, INT_MIN); /* untouched */
	return e > 50 * MS ? e - 50 * MS : 0;
}

static void *deadline_main(void *arg)
{
	weft_proc *p;
	uint64_t late;
	int code = INT_MIN;

	(void)arg;
	if (!WT_CHECK_EQ(weft_proc_spawn(&p, sleep10, &sleep_opts), 0))
		return NULL;
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, proc_deadline_try(p));
	CHECK_BELOW(late, QUICK_NS);
	/* Still running; a later wait gets the end. */
	WT_CHECK_EQ(weft_proc_kill(p, 0), 0);
	WT_CHECK_EQ(weft_proc_kill(p, SIGKILL), 0);
	WT_CHECK_EQ(weft_proc_wait(p, &code), 0);
	WT_CHECK_EQ(code, -SIGKILL);
	weft_proc_destroy(p);
	return NULL;
}

Test(proc, wait_past_its_deadline_returns_etimedout_and_can_be_retried,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(deadline_main, NULL, one_and_four, 2);
}

struct waiter {
	weft_proc *p;
	atomic_int entered;
	int rc;
	int code;
};

static void *wait_task(void *arg)
{
	struct waiter *w = arg;

	atomic_store(&w->entered, 1);
	w->rc = weft_proc_wait(w->p, &w->code);
	return NULL;
}

static void *cancel_main(void *arg)
{
	struct waiter w = { .code = INT_MIN };
	weft_task *t;
	int code = INT_MIN;

	(void)arg;
	if (!WT_CHECK_EQ(weft_proc_spawn(&w.p, sleep10, &sleep_opts), 0))
		return NULL;
	t = weft_spawn(wait_task, &w);
	if (!WT_CHECK(t != NULL))
		goto out;
	WT_CHECK(wt_yield_until(&w.entered, 10000000));
	WT_CHECK_EQ(weft_sleep(20 * MS), 0);
	WT_CHECK_EQ(weft_task_done(t), 0);
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	weft_task_release(t);
	WT_CHECK_EQ(w.rc, -ECANCELED);
	WT_CHECK_EQ(w.code, INT_MIN);
	WT_CHECK_EQ(weft_proc_kill(w.p, SIGKILL), 0);
	WT_CHECK_EQ(weft_proc_wait(w.p, &code), 0);
	WT_CHECK_EQ(code, -SIGKILL);
out:
	weft_proc_destroy(w.p);
	return NULL;
}

Test(proc, cancelling_a_waiting_task_returns_ecanceled,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(cancel_main, NULL, one_and_four, 2);
}

static void *two_waiters_main(void *arg)
{
	struct waiter w[3];
	weft_task *t[3];
	weft_proc *p;

	(void)arg;
	if (!WT_CHECK_EQ(weft_proc_spawn(&p, SH("sleep 0.1; exit 3"), NULL),
			 0))
		return NULL;
	for (int i = 0; i < 3; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].p = p;
		w[i].code = INT_MIN;
		t[i] = weft_spawn(wait_task, &w[i]);
		WT_CHECK(t[i] != NULL);
	}
	WT_CHECK_EQ(weft_gather(t, 3, NULL), 0);
	for (int i = 0; i < 3; i++) {
		WT_CHECK_EQ(w[i].rc, 0);
		WT_CHECK_EQ(w[i].code, 3);
		weft_task_release(t[i]);
	}
	weft_proc_destroy(p);
	return NULL;
}

Test(proc, several_tasks_waiting_on_one_child_all_get_its_code,
     .timeout = WT_TIMEOUT(10))
{
	static const unsigned counts[] = { 1, 2, 4 };

	for (int i = 0; i < 5; i++)
		run_counts(two_waiters_main, NULL, counts, 3);
}

/* ---- spawn errors -------------------------------------------------------- */

struct errs {
	char noexec[PATH_MAX];  /* mode 0644 */
	char noshebang[PATH_MAX]; /* mode 0755, a script without #! */
};

static void *errors_main(void *arg)
{
	struct errs *e = arg;
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDIN |
					     WEFT_PROC_STDOUT |
					     WEFT_PROC_STDERR };
	weft_proc *p = (weft_proc *)0x1;

	WT_CHECK_EQ(weft_proc_spawn(&p, (char *const[]){
					    "/nonexistent/weft-prog", NULL },
				    &o),
		    -ENOENT);
	WT_CHECK(p == NULL);
	o.flags |= WEFT_PROC_SEARCH_PATH;
	WT_CHECK_EQ(weft_proc_spawn(&p, (char *const[]){
					    "weft-no-such-program-3141", NULL },
				    &o),
		    -ENOENT);
	o.flags &= ~WEFT_PROC_SEARCH_PATH;
	WT_CHECK_EQ(weft_proc_spawn(&p, (char *const[]){ e->noexec, NULL },
				    &o),
		    -EACCES);
	/* A directory is not executable either. */
	WT_CHECK_EQ(weft_proc_spawn(&p, (char *const[]){ "/", NULL }, &o),
		    -EACCES);
	/* No fallback to /bin/sh for a script without #! (glibc's
	 * posix_spawn has none since 2.15; Python's exec has none). */
	WT_CHECK_EQ(weft_proc_spawn(&p, (char *const[]){ e->noshebang, NULL },
				    &o),
		    -ENOEXEC);
	WT_CHECK(p == NULL);
	return NULL;
}

Test(proc, exec_failures_are_returned_by_spawn, .timeout = WT_TIMEOUT(10))
{
	struct errs e;
	const char *base = getenv("TMPDIR");
	int fd;

	if (!base || !*base)
		base = "/tmp";
	snprintf(e.noexec, sizeof(e.noexec), "%s/weft-noexec-XXXXXX", base);
	fd = mkstemp(e.noexec);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "#!/bin/sh\nexit 0\n", 17), 17);
	close(fd);
	cr_assert_eq(chmod(e.noexec, 0644), 0);
	snprintf(e.noshebang, sizeof(e.noshebang), "%s/weft-noshebang-XXXXXX",
		 base);
	fd = mkstemp(e.noshebang);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "exit 0\n", 7), 7);
	close(fd);
	cr_assert_eq(chmod(e.noshebang, 0755), 0);
	run_counts(errors_main, &e, one_and_four, 2);
	unlink(e.noexec);
	unlink(e.noshebang);
}

Test(proc, bad_arguments_return_einval)
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDERR |
					     WEFT_PROC_STDERR_TO_STDOUT };
	char *const argv[] = { "/bin/true", NULL };
	char *const empty[] = { NULL };
	weft_proc *p;
	int fds = fd_count();

	cr_assert_eq(weft_proc_spawn(&p, argv, &o), -EINVAL);
	o.flags = 0x1000;
	cr_assert_eq(weft_proc_spawn(&p, argv, &o), -EINVAL);
	/* Reserved words are for fields to come: zero, or refused. */
	o.flags = 0;
	o.reserved[1] = 1;
	cr_assert_eq(weft_proc_spawn(&p, argv, &o), -EINVAL);
	cr_assert_eq(weft_proc_spawn(&p, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_proc_spawn(&p, empty, NULL), -EINVAL);
	cr_assert_eq(weft_proc_spawn(NULL, argv, NULL), -EINVAL);
	cr_assert_eq(weft_proc_wait(NULL, NULL), -EINVAL);
	cr_assert_eq(weft_proc_kill(NULL, SIGTERM), -EINVAL);
	cr_assert_eq(weft_proc_close_stdin(NULL), -EINVAL);
	cr_assert_eq(weft_proc_pid(NULL), -1);
	cr_assert_eq(weft_proc_stdout(NULL), -1);
	weft_proc_destroy(NULL);
	cr_assert_eq(fd_count(), fds, "descriptors leaked");
	assert_no_children();
}

/* ---- destroy, and calls outside a runtime -------------------------------- */

static void *destroy_main(void *arg)
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDIN |
					     WEFT_PROC_STDOUT |
					     WEFT_PROC_STDERR };
	weft_proc *p;
	pid_t pid;
	int st;

	(void)arg;
	if (!WT_CHECK_EQ(weft_proc_spawn(&p, (char *const[]){ "/bin/sleep",
							       "10", NULL },
					 &o),
			 0))
		return NULL;
	pid = weft_proc_pid(p);
	weft_proc_destroy(p);
	/* Killed and reaped: no zombie under that pid, nor any other. */
	WT_CHECK_EQ(waitpid(pid, &st, WNOHANG), -1);
	WT_CHECK_EQ(errno, ECHILD);

	/* One that has exited but was never waited for. */
	if (!WT_CHECK_EQ(weft_proc_spawn(&p, SH("exit 0"), NULL), 0))
		return NULL;
	pid = weft_proc_pid(p);
	WT_CHECK_EQ(weft_sleep(50 * MS), 0);
	weft_proc_destroy(p);
	WT_CHECK_EQ(waitpid(pid, &st, WNOHANG), -1);
	WT_CHECK_EQ(errno, ECHILD);
	return NULL;
}

Test(proc, destroy_kills_and_reaps_a_running_child,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(destroy_main, NULL, one_and_four, 2);
}

Test(proc, spawn_kill_and_destroy_work_outside_a_runtime,
     .timeout = WT_TIMEOUT(10))
{
	static char *const argv[] = { "/bin/sh", "-c", "echo x; exec sleep 10",
				      NULL };
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT };
	weft_proc *p;
	int fds = fd_count(), code = INT_MIN;
	char c;
	pid_t pid;

	cr_assert_eq(weft_proc_spawn(&p, argv, &o), 0);
	pid = weft_proc_pid(p);
	cr_assert_eq(read(weft_proc_stdout(p), &c, 1), 1);
	cr_assert_eq(c, 'x');
	/* Waiting suspends a task: refused here. */
	cr_assert_eq(weft_proc_wait(p, &code), -EPERM);
	cr_assert_eq(code, INT_MIN);
	cr_assert_eq(weft_proc_kill(p, 0), 0);
	weft_proc_destroy(p);
	cr_assert(kill(pid, 0) == -1 && errno == ESRCH);
	cr_assert_eq(fd_count(), fds, "descriptors leaked");
	assert_no_children();
}

/* ---- many at once -------------------------------------------------------- */

#define MANY 50

struct many {
	int i;
	int rc, code;
	char out[32];
	int worker;
};

static void *many_task(void *arg)
{
	struct many *m = arg;
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT |
					     WEFT_PROC_SEARCH_PATH };
	char script[64];
	weft_proc *p;

	m->worker = weft_worker_index();
	snprintf(script, sizeof(script), "echo %d; exit %d", m->i,
		 (m->i * 7) % 256);
	m->rc = weft_proc_spawn(&p, SH(script), &o);
	if (m->rc)
		return NULL;
	/* The task may resume on another worker after any suspension; the
	 * handle serves whichever worker runs it. */
	if (read_all(weft_proc_stdout(p), m->out, sizeof(m->out)) < 0)
		m->out[0] = '\0';
	m->rc = weft_proc_wait(p, &m->code);
	weft_proc_destroy(p);
	return NULL;
}

static void *many_main(void *arg)
{
	struct many *m = calloc(MANY, sizeof(*m));
	weft_task *t[MANY];
	unsigned seen = 0;

	(void)arg;
	if (!WT_CHECK(m != NULL))
		return NULL;
	for (int i = 0; i < MANY; i++) {
		m[i].i = i;
		m[i].code = INT_MIN;
		t[i] = weft_spawn(many_task, &m[i]);
		if (!WT_CHECK(t[i] != NULL))
			return NULL;
	}
	WT_CHECK_EQ(weft_gather(t, MANY, NULL), 0);
	for (int i = 0; i < MANY; i++) {
		char want[32];

		snprintf(want, sizeof(want), "%d\n", i);
		WT_CHECK_EQ(m[i].rc, 0);
		WT_CHECK_EQ(m[i].code, (i * 7) % 256);
		WT_CHECK(strcmp(m[i].out, want) == 0);
		if (m[i].worker >= 0 && m[i].worker < 32)
			seen |= 1u << m[i].worker;
		weft_task_release(t[i]);
	}
	cr_log_info("children spawned from workers 0x%x", seen);
	free(m);
	return NULL;
}

Test(proc, fifty_children_from_tasks_on_four_workers_are_all_reaped,
     .timeout = WT_TIMEOUT(30))
{
	static const unsigned four[] = { 4 };

	for (int round = 0; round < 3; round++)
		run_counts(many_main, NULL, four, 1);
}

/* ---- the child's signal state -------------------------------------------- */

static void *signals_main(void *arg)
{
	struct outcome r;
	sigset_t block, old;

	(void)arg;
	/* weft_run() ignores SIGPIPE; the child gets the default back. */
	WT_CHECK_EQ(run_collect(SH("kill -PIPE $$; exit 0"), NULL, &r), 0);
	WT_CHECK_EQ(r.code, -SIGPIPE);

	/* A signal blocked in the spawning thread is not blocked in the
	 * child. One worker: the task stays on this thread, and nothing in
	 * between suspends. */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	{
		weft_proc *p;
		int rc = weft_proc_spawn(&p, SH("kill -USR1 $$; exit 0"),
					 NULL);

		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (WT_CHECK_EQ(rc, 0)) {
			WT_CHECK_EQ(weft_proc_wait(p, &r.code), 0);
			WT_CHECK_EQ(r.code, -SIGUSR1);
			weft_proc_destroy(p);
		}
	}
	return NULL;
}

Test(proc, the_child_starts_with_default_sigpipe_and_an_empty_mask,
     .timeout = WT_TIMEOUT(10))
{
	static const unsigned one[] = { 1 };

	run_counts(signals_main, NULL, one, 1);
}

/* ---- descriptors --------------------------------------------------------- */

static void *leak_main(void *arg)
{
	int before = fd_count();
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDIN |
					     WEFT_PROC_STDOUT |
					     WEFT_PROC_STDERR };
	struct outcome r;

	(void)arg;
	/* The child sees exactly 0, 1, 2: no pipe end, ring or other
	 * descriptor of ours (the listing's own fd is the one extra). */
	o.flags = WEFT_PROC_STDOUT | WEFT_PROC_DEVNULL;
	WT_CHECK_EQ(run_collect(SH("ls /proc/self/fd | wc -l"), &o, &r), 0);
	WT_CHECK_EQ(atoi(r.out), 4);
	WT_CHECK_EQ(r.code, 0);
	/* Not even a descriptor left inheritable on purpose. */
	WT_CHECK_EQ(run_collect(SH("readlink /proc/self/fd/* | grep -c "
				   "weft-inherit || true"),
				&o, &r),
		    0);
	WT_CHECK_EQ(atoi(r.out), 0);

	o.flags = WEFT_PROC_STDIN | WEFT_PROC_STDOUT | WEFT_PROC_STDERR;
	for (int i = 0; i < 20; i++) {
		WT_CHECK_EQ(run_collect(SH("exit 1"), &o, &r), 0);
		WT_CHECK_EQ(r.code, 1);
		WT_CHECK_EQ(run_collect((char *const[]){ "/nonexistent-weft/x",
							 NULL },
					&o, &r),
			    -ENOENT);
	}
	WT_CHECK_EQ(fd_count(), before);
	return NULL;
}

Test(proc, no_descriptor_leaks_into_the_child_or_stays_open,
     .timeout = WT_TIMEOUT(20))
{
	static const unsigned two[] = { 2 };
	char path[] = "/tmp/weft-inherit-XXXXXX";
	int fd = mkstemp(path), flags;

	cr_assert(fd >= 0);
	/* mkstemp's fd is inheritable (no O_CLOEXEC). */
	flags = fcntl(fd, F_GETFD);
	cr_assert_eq(flags & FD_CLOEXEC, 0);
	unlink(path);
	run_counts(leak_main, &fd, two, 1);
	close(fd);
}

/* ---- closing stdin under a writer (issue 15) ------------------------------ */

#define FEED_BYTES (256 * 1024)
#define DECOYS 16

struct feed_io {
	weft_proc *p;
	uint8_t *data;
	ssize_t written;
};

static void *feed_writer(void *arg)
{
	struct feed_io *f = arg;

	f->written = weft_write_all(weft_proc_stdin(f->p), f->data, FEED_BYTES,
				    -1);
	return NULL;
}

/*
 * One task is in weft_write_all() of 256 KiB to a child that reads nothing
 * for its first 300 ms; another closes stdin once the pipe is full, then
 * opens descriptors, which take the lowest free numbers. The writer's next
 * write must not reach any of them (before the fix the pipe's number was
 * free at once, and the rest of the feed went into the first decoy with
 * write_all reporting all of it written).
 */
static void *close_under_writer_main(void *arg)
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDIN |
					     WEFT_PROC_DEVNULL };
	struct feed_io f = { .written = INT_MIN };
	int decoy[DECOYS], sv[2] = { -1, -1 }, queued = 0, code = INT_MIN;
	bool starve = arg != NULL;
	struct rlimit lim;
	weft_task *w = NULL;

	for (int i = 0; i < DECOYS; i++)
		decoy[i] = -1;
	f.data = malloc(FEED_BYTES);
	if (!WT_CHECK(f.data))
		return NULL;
	memset(f.data, 'x', FEED_BYTES);
	if (!WT_CHECK_EQ(weft_proc_spawn(&f.p,
					 SH("sleep 0.3; cat >/dev/null"), &o),
			 0))
		goto out;
	w = weft_spawn(feed_writer, &f);
	WT_CHECK(w != NULL);
	/* The pipe holds 64 KiB: once they are in, the writer is mid-way
	 * (the rest is in flight or about to be written). */
	for (int i = 0; i < 2000 && queued < 65536; i++) {
		if (ioctl(weft_proc_stdin(f.p), FIONREAD, &queued) < 0)
			break;
		if (queued < 65536)
			weft_sleep(WEFT_NSEC_PER_MSEC);
	}
	WT_CHECK_EQ(queued, 65536);
	if (starve) {
		/* No number free below the limit: closing must not need
		 * one. */
		struct rlimit tight;
		int lowest = dup(0);

		WT_CHECK(lowest >= 0);
		close(lowest);
		WT_CHECK_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
		tight = lim;
		tight.rlim_cur = (rlim_t)lowest;
		WT_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
		WT_CHECK_EQ(dup(0), -1); /* starved indeed */
		WT_CHECK_EQ(weft_proc_close_stdin(f.p), 0);
		WT_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
	} else {
		WT_CHECK_EQ(weft_proc_close_stdin(f.p), 0);
	}
	for (int i = 0; i < DECOYS; i++)
		decoy[i] = memfd_create("weft-decoy", MFD_CLOEXEC);
	WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	if (w) {
		WT_CHECK_EQ(weft_await(w, NULL), 0);
		weft_task_release(w);
	}
	/* An error, not a success for bytes that the child never got. */
	WT_CHECK_EQ(f.written, -EPIPE);
	for (int i = 0; i < DECOYS; i++) {
		struct stat st;

		if (WT_CHECK(decoy[i] >= 0) &&
		    WT_CHECK_EQ(fstat(decoy[i], &st), 0))
			WT_CHECK_EQ(st.st_size, 0); /* no byte of the feed */
		if (decoy[i] >= 0)
			close(decoy[i]);
	}
	for (int i = 0; i < 2; i++) {
		char c;

		if (sv[i] < 0)
			continue;
		WT_CHECK_EQ(recv(sv[i], &c, 1, MSG_DONTWAIT), -1);
		WT_CHECK_EQ(errno, EAGAIN);
	}
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close(sv[i]);
	WT_CHECK_EQ(weft_proc_stdin(f.p), -1);
	WT_CHECK_EQ(weft_proc_close_stdin(f.p), -EBADF);
	/* The child still read end of file: cat exits 0. */
	WT_CHECK_EQ(weft_proc_wait(f.p, &code), 0);
	WT_CHECK_EQ(code, 0);
	weft_proc_destroy(f.p);
out:
	free(f.data);
	return NULL;
}

Test(proc, close_stdin_under_a_writer_never_lets_its_bytes_reach_a_reused_fd,
     .timeout = WT_TIMEOUT(20))
{
	run_counts(close_under_writer_main, NULL, one_and_four, 2);
}

/* The same when the process has no descriptor to spare at the close. */
Test(proc, close_stdin_without_a_free_descriptor_still_keeps_its_number,
     .timeout = WT_TIMEOUT(20))
{
	static const unsigned one[] = { 1 };
	static int starve = 1;

	run_counts(close_under_writer_main, &starve, one, 1);
}

/* ---- issue 18: promises of weft.h that had no test ------------------------ */

/* A temporary directory under $TMPDIR (or /tmp) in buf; asserts. */
static void make_tmpdir(char *buf, size_t cap, const char *tag)
{
	const char *base = getenv("TMPDIR");

	if (!base || !*base)
		base = "/tmp";
	snprintf(buf, cap, "%s/weft-%s-XXXXXX", base, tag);
	cr_assert_not_null(mkdtemp(buf), "mkdtemp(%s): %s", buf,
			   strerror(errno));
}

/*
 * weft.h: "Do not reap weft's children by other means (waitpid(-1, ...),
 * ...): the wait then returns -ECHILD." Once with the child reaped before
 * the wait, once while a task is parked in it (the pidfd turns readable,
 * the reap finds nothing). Destroy must not hang on such a handle either.
 * The second case runs on one worker: with more, the waiter woken by the
 * exit could reap before the test's waitpid() does.
 */
struct echild {
	weft_proc *p;
	atomic_int entered;
	int rc, code;
};

static void *echild_waiter(void *arg)
{
	struct echild *e = arg;

	atomic_store(&e->entered, 1);
	e->rc = weft_proc_wait(e->p, &e->code);
	return NULL;
}

static void *echild_main(void *arg)
{
	struct echild e = { .rc = INT_MIN, .code = INT_MIN };
	weft_task *t;
	pid_t pid;
	int st, code = INT_MIN;

	(void)arg;
	/* Reaped before the wait. */
	if (!WT_CHECK_EQ(weft_proc_spawn(&e.p, SH("exit 3"), NULL), 0))
		return NULL;
	pid = weft_proc_pid(e.p);
	WT_CHECK_EQ(waitpid(pid, &st, 0), pid);
	WT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
	WT_CHECK_EQ(weft_proc_wait(e.p, &code), -ECHILD);
	WT_CHECK_EQ(code, INT_MIN); /* no code was collected */
	weft_proc_destroy(e.p);
	if (!arg)
		return NULL;

	/* Reaped while a task waits. One worker (arg set): the waiter
	 * cannot run, so cannot reap, until this task's waitpid() has. */
	if (!WT_CHECK_EQ(weft_proc_spawn(&e.p, sleep10, &sleep_opts), 0))
		return NULL;
	pid = weft_proc_pid(e.p);
	t = weft_spawn(echild_waiter, &e);
	if (!WT_CHECK(t != NULL)) {
		weft_proc_destroy(e.p);
		return NULL;
	}
	settle_count(&e.entered, 1);
	WT_CHECK_EQ(kill(pid, SIGKILL), 0);
	WT_CHECK_EQ(waitpid(pid, &st, 0), pid);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(e.rc, -ECHILD);
	WT_CHECK_EQ(e.code, INT_MIN);
	weft_proc_destroy(e.p);
	return NULL;
}

Test(proc, a_child_reaped_behind_wefts_back_makes_wait_return_echild,
     .timeout = WT_TIMEOUT(10))
{
	static const unsigned one[] = { 1 };

	run_counts(echild_main, NULL, one_and_four, 2);
	run_counts(echild_main, (void *)1, one, 1);
}

/*
 * weft.h: "no SIGCHLD handler is installed". A process with a SIGCHLD
 * handler of its own (a counter) spawns, waits for and destroys children:
 * afterwards the handler is still its own, with its flags, and the same
 * for SIGCHLD at SIG_DFL.
 */
static atomic_int sigchld_seen;

static void sigchld_count(int sig)
{
	(void)sig;
	atomic_fetch_add(&sigchld_seen, 1);
}

static void *sigchld_main(void *arg)
{
	struct sigaction now;
	weft_proc *p;
	int code = INT_MIN;
	void (*want)(int) = (void (*)(int))arg;

	for (int i = 0; i < 3; i++) {
		if (!WT_CHECK_EQ(weft_proc_spawn(&p, SH("exit 0"), NULL), 0))
			return NULL;
		sigaction(SIGCHLD, NULL, &now);
		WT_CHECK_PTR_EQ(now.sa_handler, want); /* after the spawn */
		WT_CHECK_EQ(weft_proc_wait(p, &code), 0);
		WT_CHECK_EQ(code, 0);
		weft_proc_destroy(p);
	}
	/* One destroyed while running (killed and reaped there). */
	if (WT_CHECK_EQ(weft_proc_spawn(&p, sleep10, &sleep_opts), 0))
		weft_proc_destroy(p);
	return NULL;
}

Test(proc, spawning_leaves_the_sigchld_disposition_as_it_was,
     .timeout = WT_TIMEOUT(10))
{
	struct sigaction sa, now;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sigchld_count;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGCHLD, &sa, NULL), 0);
	run_counts(sigchld_main, (void *)sigchld_count, one_and_four, 2);
	cr_assert_eq(sigaction(SIGCHLD, NULL, &now), 0);
	cr_assert(now.sa_handler == sigchld_count,
		  "SIGCHLD's handler was replaced (now %p)",
		  (void *)now.sa_handler);
	cr_assert(now.sa_flags & SA_RESTART, "SIGCHLD's flags changed: %#x",
		  (unsigned)now.sa_flags);
	cr_log_info("SIGCHLD delivered to our handler %d time(s)",
		    atomic_load(&sigchld_seen));

	sa.sa_handler = SIG_DFL;
	sa.sa_flags = 0;
	cr_assert_eq(sigaction(SIGCHLD, &sa, NULL), 0);
	run_counts(sigchld_main, (void *)SIG_DFL, one_and_four, 2);
	cr_assert_eq(sigaction(SIGCHLD, NULL, &now), 0);
	cr_assert(now.sa_handler == SIG_DFL,
		  "SIGCHLD is no longer SIG_DFL after spawning (now %p)",
		  (void *)now.sa_handler);
}

/*
 * weft.h: the child gets "SIGPIPE and SIGXFSZ at their default action".
 * The parent ignores SIGXFSZ (an ignored disposition survives exec), the
 * child sends it to itself: killed, -SIGXFSZ; an ignored one would let
 * it exit 0.
 */
static void *sigxfsz_main(void *arg)
{
	struct outcome r;

	(void)arg;
	WT_CHECK_EQ(run_collect(SH("kill -XFSZ $$; exit 0"), NULL, &r), 0);
	WT_CHECK_EQ(r.code, -SIGXFSZ);
	return NULL;
}

Test(proc, sigxfsz_ignored_in_the_parent_is_at_its_default_in_the_child,
     .timeout = WT_TIMEOUT(10))
{
	struct sigaction ign, old;

	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	cr_assert_eq(sigaction(SIGXFSZ, &ign, &old), 0);
	run_counts(sigxfsz_main, NULL, one_and_four, 2);
	cr_assert_eq(sigaction(SIGXFSZ, &old, NULL), 0);
}

/*
 * weft.h: "-ENOTDIR  a component of the path or cwd is not a directory".
 * A regular file used as a directory: in the program's path (with and
 * without WEFT_PROC_SEARCH_PATH, which a '/' in argv[0] bypasses), as the
 * cwd and inside the cwd.
 */
struct notdir {
	char file[PATH_MAX];
	char below[PATH_MAX + 8]; /* file + "/x" */
};

static void *notdir_main(void *arg)
{
	struct notdir *n = arg;
	struct weft_proc_opts o = { .flags = WEFT_PROC_DEVNULL };
	struct outcome r;

	WT_CHECK_EQ(run_collect((char *const[]){ n->below, NULL }, &o, &r),
		    -ENOTDIR);
	o.flags |= WEFT_PROC_SEARCH_PATH;
	WT_CHECK_EQ(run_collect((char *const[]){ n->below, NULL }, &o, &r),
		    -ENOTDIR);
	o.flags = WEFT_PROC_DEVNULL;
	o.cwd = n->file;
	WT_CHECK_EQ(run_collect(SH("exit 0"), &o, &r), -ENOTDIR);
	o.cwd = n->below;
	WT_CHECK_EQ(run_collect(SH("exit 0"), &o, &r), -ENOTDIR);
	return NULL;
}

Test(proc, a_file_used_as_a_directory_is_enotdir, .timeout = WT_TIMEOUT(10))
{
	struct notdir n;
	const char *base = getenv("TMPDIR");
	int fd;

	if (!base || !*base)
		base = "/tmp";
	snprintf(n.file, sizeof(n.file), "%s/weft-notdir-XXXXXX", base);
	fd = mkstemp(n.file);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	close(fd);
	snprintf(n.below, sizeof(n.below), "%s/x", n.file);
	run_counts(notdir_main, &n, one_and_four, 2);
	unlink(n.file);
}

/*
 * weft.h, weft_proc_kill(): "Returns 0 (also when the child has exited
 * but was not reaped yet: the signal does nothing)". waitid(WNOWAIT)
 * sees the exit without reaping; then signal 0 and SIGTERM both return
 * 0, and the wait still reports the exit status 3, not -SIGTERM.
 */
static void *kill_exited_main(void *arg)
{
	weft_proc *p;
	siginfo_t si;
	int code = INT_MIN, rc;

	(void)arg;
	if (!WT_CHECK_EQ(weft_proc_spawn(&p, SH("exit 3"), NULL), 0))
		return NULL;
	memset(&si, 0, sizeof(si));
	do
		rc = waitid(P_PID, (id_t)weft_proc_pid(p), &si,
			    WEXITED | WNOWAIT);
	while (rc < 0 && errno == EINTR);
	WT_CHECK_EQ(rc, 0);
	WT_CHECK_EQ(si.si_code, CLD_EXITED);
	WT_CHECK_EQ(weft_proc_kill(p, 0), 0);
	WT_CHECK_EQ(weft_proc_kill(p, SIGTERM), 0);
	WT_CHECK_EQ(weft_proc_wait(p, &code), 0);
	WT_CHECK_EQ(code, 3);
	/* Reaped now. */
	WT_CHECK_EQ(weft_proc_kill(p, 0), -ESRCH);
	weft_proc_destroy(p);
	return NULL;
}

Test(proc, kill_succeeds_on_a_child_that_exited_but_was_not_reaped,
     .timeout = WT_TIMEOUT(10))
{
	run_counts(kill_exited_main, NULL, one_and_four, 2);
}

/* weft.h, weft_proc_kill(): "-EINVAL (bad signal, NULL p)". Negative and
 * past the last signal; the child is untouched by them. Outside a
 * runtime (kill and destroy are callable from any thread). */
Test(proc, kill_with_a_bad_signal_number_is_einval,
     .timeout = WT_TIMEOUT(10))
{
	static const int bad[] = { -1, INT_MIN, NSIG, NSIG + 1, 1000 };
	weft_proc *p;
	int fds = fd_count(), rc;
	pid_t pid;

	cr_assert_eq(weft_proc_spawn(&p, sleep10, &sleep_opts), 0);
	pid = weft_proc_pid(p);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = weft_proc_kill(p, bad[i]);
		cr_assert_eq(rc, -EINVAL, "weft_proc_kill(p, %d) = %d (%s)",
			     bad[i], rc, weft_strerror(rc));
	}
	cr_assert_eq(weft_proc_kill(p, 0), 0, "the child did not survive");
	cr_assert_eq(kill(pid, 0), 0);
	weft_proc_destroy(p);
	cr_assert_eq(fd_count(), fds, "descriptors leaked");
	assert_no_children();
}

/*
 * weft.h, WEFT_PROC_SEARCH_PATH: "look argv[0] up in PATH (the parent's
 * PATH, not envp's)". envp's PATH names a directory that does not exist:
 * "sh" is still found (and the child sees envp's PATH). Then envp's PATH
 * names a directory holding a program the parent's PATH lacks: not found.
 */
struct spath {
	char dir[PATH_MAX];
	char envpath[PATH_MAX + 8];
	char prog_name[64];
};

static void *search_path_main(void *arg)
{
	struct spath *s = arg;
	char *env_nodir[] = { "PATH=/nonexistent-weft-path", "WEFT_T=1",
			      NULL };
	char *env_dir[] = { s->envpath, NULL };
	struct weft_proc_opts o = { .flags = WEFT_PROC_SEARCH_PATH |
					     WEFT_PROC_STDOUT,
				    .envp = env_nodir };
	struct outcome r;

	WT_CHECK_EQ(run_collect((char *const[]){ "sh", "-c",
						 "echo \"$PATH\"; exit 6",
						 NULL },
				&o, &r),
		    0);
	WT_CHECK(strcmp(r.out, "/nonexistent-weft-path\n") == 0);
	WT_CHECK_EQ(r.code, 6);

	o.envp = env_dir;
	WT_CHECK_EQ(run_collect((char *const[]){ s->prog_name, NULL }, &o,
				&r),
		    -ENOENT);
	return NULL;
}

Test(proc, search_path_looks_in_the_parents_path_not_in_envps,
     .timeout = WT_TIMEOUT(10))
{
	struct spath s;
	char prog[PATH_MAX + 80];
	const char *path = getenv("PATH");
	FILE *f;

	cr_assert(path && *path, "the test needs a PATH");
	make_tmpdir(s.dir, sizeof(s.dir), "spath");
	cr_assert(!strstr(path, s.dir));
	snprintf(s.envpath, sizeof(s.envpath), "PATH=%s", s.dir);
	snprintf(s.prog_name, sizeof(s.prog_name), "weft-only-in-envp-%d",
		 (int)getpid());
	snprintf(prog, sizeof(prog), "%s/%s", s.dir, s.prog_name);
	f = fopen(prog, "w");
	cr_assert_not_null(f);
	fputs("#!/bin/sh\nexit 0\n", f);
	fclose(f);
	cr_assert_eq(chmod(prog, 0755), 0);
	run_counts(search_path_main, &s, one_and_four, 2);
	unlink(prog);
	cr_assert_eq(rmdir(s.dir), 0);
}

/* weft.h: "Pipe fds are blocking-mode pipes, close-on-exec". The
 * parent's three ends: FD_CLOEXEC set, O_NONBLOCK clear. Outside a
 * runtime (spawn and destroy are callable from any thread). */
Test(proc, the_parents_pipe_ends_are_blocking_and_close_on_exec,
     .timeout = WT_TIMEOUT(10))
{
	struct weft_proc_opts o = { .flags = WEFT_PROC_STDIN |
					     WEFT_PROC_STDOUT |
					     WEFT_PROC_STDERR };
	static const char *const name[] = { "stdin", "stdout", "stderr" };
	weft_proc *p;
	int fds = fd_count();

	cr_assert_eq(weft_proc_spawn(&p, (char *const[]){ "/bin/cat", NULL },
				     &o),
		     0);
	int ends[3] = { weft_proc_stdin(p), weft_proc_stdout(p),
			weft_proc_stderr(p) };
	for (int i = 0; i < 3; i++) {
		int fdfl = fcntl(ends[i], F_GETFD), fl = fcntl(ends[i], F_GETFL);

		cr_assert(ends[i] >= 0 && fdfl >= 0 && fl >= 0,
			  "%s end %d unreadable", name[i], ends[i]);
		cr_assert(fdfl & FD_CLOEXEC, "%s end %d is not close-on-exec",
			  name[i], ends[i]);
		cr_assert_eq(fl & O_NONBLOCK, 0, "%s end %d is non-blocking",
			     name[i], ends[i]);
	}
	weft_proc_destroy(p);
	cr_assert_eq(fd_count(), fds, "descriptors leaked");
	assert_no_children();
}
