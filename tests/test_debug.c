/*
 * The task registry: weft_tasks_foreach(), weft_dump(), the dump signal,
 * the deadlock hint and WEFT_RUN_ABORT_ON_DEADLOCK (runtime/debug.c).
 *
 * Built with frame pointers and -rdynamic (tests/CMakeLists.txt), so that
 * a dump's backtraces reach the tasks' functions and dladdr() names them;
 * those functions are therefore not static.
 */
#include <linux/io_uring.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "weft_test.h"

WT_SUITE(debug, 60);

#if !WT_REGISTRY
/* Built with -DWEFT_TASK_REGISTRY=OFF: the calls say so, and the options
 * that need the registry are refused rather than ignored. */
static void *off_main(void *arg)
{
	(void)arg;
	WT_CHECK_EQ(weft_tasks_foreach(NULL, NULL, NULL), -ENOSYS);
	WT_CHECK_EQ(weft_dump(NULL, stderr), -ENOSYS);
	return NULL;
}

Test(debug, registry_compiled_out_returns_enosys, .timeout = WT_TIMEOUT(10))
{
	struct weft_config c;

	wt_run(off_main, NULL, 1);
	memset(&c, 0, sizeof(c));
	c.dump_signal = SIGUSR1;
	cr_assert_eq(weft_run(off_main, NULL, &c, NULL), -EINVAL);
	memset(&c, 0, sizeof(c));
	c.flags = WEFT_RUN_ABORT_ON_DEADLOCK;
	cr_assert_eq(weft_run(off_main, NULL, &c, NULL), -EINVAL);
}
#else

/* ---- helpers ------------------------------------------------------------ */

struct count {
	int n, parked, by_kind[32];
};

static int count_visit(const struct weft_task_info *i, void *arg)
{
	struct count *c = arg;

	c->n++;
	if (i->state == WEFT_TASK_PARKED) {
		c->parked++;
		if (i->wait >= 0 && i->wait < 32)
			c->by_kind[i->wait]++;
	}
	return 0;
}

/* Waits (yielding, sleeping) until `want` tasks are parked. */
static int wait_parked(int want)
{
	struct count c;
	int tries;

	for (tries = 0; tries < 2000; tries++) {
		memset(&c, 0, sizeof(c));
		if (weft_tasks_foreach(NULL, count_visit, &c) < 0)
			return -1;
		if (c.parked >= want)
			return c.parked;
		weft_sleep(WEFT_NSEC_PER_MSEC);
	}
	return c.parked;
}

/* weft_dump() into a string (free it). */
static char *dump_string(weft_runtime *rt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int err;

	if (!f)
		return NULL;
	err = weft_dump(rt, f);
	fclose(f);
	if (err < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* The dump's entry for a task: from "task N 'name' [" to the next "\ntask"
 * or group header. Copied into out. */
static bool dump_entry(const char *dump, const char *name, char *out,
		       size_t n)
{
	char key[64];
	const char *p, *e;

	snprintf(key, sizeof(key), "'%s' [", name);
	p = strstr(dump, key);
	if (!p)
		return false;
	while (p > dump && p[-1] != '\n')
		p--;
	e = strstr(p + 1, "\ntask ");
	const char *g = strstr(p + 1, "\n--");
	if (!e || (g && g < e))
		e = g;
	if (!e)
		e = p + strlen(p);
	if ((size_t)(e - p) >= n)
		e = p + n - 1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return true;
}

/* ---- the tasks of the dump test (not static: dladdr names them) ------- */

struct scene {
	weft_chan *ch;
	weft_lock *lock;
	weft_event *ev;
	weft_group *group;
	weft_task *receiver;
	int sv[2];
	atomic_int release_blocking;
	int line_sleeper;
};

void *dbg_sleeper(void *arg)
{
	(void)arg;
	weft_sleep(60 * WEFT_NSEC_PER_SEC);
	return NULL;
}

void *dbg_receiver(void *arg)
{
	struct scene *s = arg;
	void *v;

	weft_chan_recv(s->ch, &v);
	return NULL;
}

void *dbg_locker(void *arg)
{
	struct scene *s = arg;

	if (weft_lock_acquire(s->lock) == 0)
		weft_lock_release(s->lock);
	return NULL;
}

void *dbg_awaiter(void *arg)
{
	struct scene *s = arg;

	weft_await(s->receiver, NULL);
	return NULL;
}

void *dbg_member(void *arg)
{
	struct scene *s = arg;

	weft_event_wait(s->ev);
	return NULL;
}

void *dbg_grouper(void *arg)
{
	struct scene *s = arg;

	weft_group_wait(s->group);
	return NULL;
}

void *dbg_reader(void *arg)
{
	struct scene *s = arg;
	char c;

	weft_recv(s->sv[0], &c, 1, 0);
	return NULL;
}

void *dbg_blocking_fn(void *arg)
{
	struct scene *s = arg;

	while (!atomic_load(&s->release_blocking))
		usleep(1000);
	return NULL;
}

void *dbg_blocker(void *arg)
{
	weft_run_blocking(dbg_blocking_fn, arg, NULL);
	return NULL;
}

/* A named task, with the caller's line as its spawn site (what the
 * weft_spawn_opts() macro does for its own line). */
static weft_task *spawn_named_at(const char *name, weft_fn fn, void *arg,
				 const char *site)
{
	struct weft_spawn_opts o = { .name = name };
	weft_task *t = NULL;

	WT_CHECK_EQ(weft_spawn_opts_at(&t, fn, arg, &o, site), 0);
	return t;
}
#define spawn_named(name, fn, arg) \
	spawn_named_at((name), (fn), (arg), WEFT_SITE_)

static char dump_text[65536];
static int dump_line_sleeper;
static void *dump_chan, *dump_lock, *dump_group;
static int dump_fd;
static int dump_reactor;

static void *dump_main(void *arg)
{
	struct scene s;
	weft_task *t[8];
	char *d;
	int i, n = 0;

	(void)arg;
	memset(&s, 0, sizeof(s));
	WT_CHECK_EQ(weft_chan_create(&s.ch, 0), 0);
	WT_CHECK_EQ(weft_lock_create(&s.lock), 0);
	WT_CHECK_EQ(weft_event_create(&s.ev), 0);
	WT_CHECK_EQ(weft_group_create(&s.group), 0);
	WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s.sv), 0);
	WT_CHECK_EQ(weft_lock_acquire(s.lock), 0); /* held by main */
	WT_CHECK_EQ(weft_group_spawn(s.group, NULL, dbg_member, &s), 0);

	dump_line_sleeper = __LINE__ + 1;
	t[n++] = spawn_named("sleeper", dbg_sleeper, &s);
	t[n++] = s.receiver = spawn_named("receiver", dbg_receiver, &s);
	t[n++] = spawn_named("locker", dbg_locker, &s);
	t[n++] = spawn_named("awaiter", dbg_awaiter, &s);
	t[n++] = spawn_named("grouper", dbg_grouper, &s);
	t[n++] = spawn_named("reader", dbg_reader, &s);
	t[n++] = spawn_named("blocker", dbg_blocker, &s);
	/* The seven and the group's member. */
	WT_CHECK_EQ(wait_parked(8), 8);
	d = dump_string(NULL);
	WT_CHECK(d != NULL);
	if (d) {
		snprintf(dump_text, sizeof(dump_text), "%s", d);
		free(d);
	}
	dump_chan = s.ch;
	dump_lock = s.lock;
	dump_group = s.group;
	dump_fd = s.sv[0];
	dump_reactor = weft_runtime_reactor(weft_runtime_self());

	/* Let them all go. */
	atomic_store(&s.release_blocking, 1);
	weft_lock_release(s.lock);
	weft_event_set(s.ev);
	WT_CHECK_EQ(weft_chan_send(s.ch, NULL), 0);
	WT_CHECK_EQ(write(s.sv[1], "x", 1), 1);
	weft_cancel(t[0]);
	for (i = 0; i < n; i++) {
		weft_await(t[i], NULL);
		weft_task_release(t[i]);
	}
	WT_CHECK_EQ(weft_group_wait(s.group), 0);
	weft_group_destroy(s.group);
	weft_chan_destroy(s.ch);
	weft_lock_destroy(s.lock);
	weft_event_destroy(s.ev);
	close(s.sv[0]);
	close(s.sv[1]);
	return NULL;
}

/* Each wait reason, with the object, name, spawn site and a frame of the
 * task's own function. */
Test(debug, dump_names_every_wait_with_site_and_frames,
     .timeout = WT_TIMEOUT(30))
{
	char e[4096], want[128];

	wt_run(dump_main, NULL, 2);
	cr_log_info("%s", dump_text);

	cr_assert(dump_entry(dump_text, "sleeper", e, sizeof(e)), "%s",
		  dump_text);
	cr_assert(strstr(e, "[sleep until +"), "%s", e);
	snprintf(want, sizeof(want), "test_debug.c:%d, ", dump_line_sleeper);
	cr_assert(strstr(e, want), "no '%s' in: %s", want, e);
	cr_assert(strstr(e, "dbg_sleeper+"), "no frame of dbg_sleeper: %s", e);

	cr_assert(dump_entry(dump_text, "receiver", e, sizeof(e)));
	snprintf(want, sizeof(want), "[chan recv %p, ", dump_chan);
	cr_assert(strstr(e, want), "no '%s' in: %s", want, e);
	cr_assert(strstr(e, "dbg_receiver+"), "%s", e);

	cr_assert(dump_entry(dump_text, "locker", e, sizeof(e)));
	snprintf(want, sizeof(want), "[lock %p, ", dump_lock);
	cr_assert(strstr(e, want), "no '%s' in: %s", want, e);
	cr_assert(strstr(e, "dbg_locker+"), "%s", e);

	cr_assert(dump_entry(dump_text, "awaiter", e, sizeof(e)));
	cr_assert(strstr(e, "'receiver', "), "awaited task not named: %s", e);
	cr_assert(strstr(e, "[await task "), "%s", e);
	cr_assert(strstr(e, "dbg_awaiter+"), "%s", e);

	cr_assert(dump_entry(dump_text, "grouper", e, sizeof(e)));
	snprintf(want, sizeof(want), "[group wait %p, ", dump_group);
	cr_assert(strstr(e, want), "no '%s' in: %s", want, e);
	cr_assert(strstr(e, "dbg_grouper+"), "%s", e);

	cr_assert(dump_entry(dump_text, "group task", e, sizeof(e)));
	cr_assert(strstr(e, "[event wait "), "%s", e);

	cr_assert(dump_entry(dump_text, "reader", e, sizeof(e)));
	if (dump_reactor == WEFT_REACTOR_URING)
		snprintf(want, sizeof(want), "[recv fd %d (io_uring), ",
			 dump_fd);
	else
		snprintf(want, sizeof(want), "[fd %d readable (epoll), ",
			 dump_fd);
	cr_assert(strstr(e, want), "no '%s' in: %s", want, e);
	cr_assert(strstr(e, "dbg_reader+"), "%s", e);

	cr_assert(dump_entry(dump_text, "blocker", e, sizeof(e)));
	cr_assert(strstr(e, "[run_blocking dbg_blocking_fn, "), "%s", e);
	cr_assert(strstr(e, "dbg_blocker+"), "%s", e);

	cr_assert(dump_entry(dump_text, "main", e, sizeof(e)));
	cr_assert(strstr(e, "[running on worker "), "%s", e);
	/* Grouped: a header per state and reason. */
	cr_assert(strstr(dump_text, "-- parked, chan recv: 1 task --"), "%s",
		  dump_text);
	/* A sleeper and a reader: no deadlock hint. */
	cr_assert(!strstr(dump_text, "deadlock"), "%s", dump_text);
}

/* ---- foreach from another thread while tasks churn ------------------------ */

struct churn {
	atomic_int stop;
	atomic_int walks, seen, bad;
	weft_runtime *rt;
};

static int churn_visit(const struct weft_task_info *i, void *arg)
{
	struct churn *c = arg;

	atomic_fetch_add(&c->seen, 1);
	if (i->state < WEFT_TASK_RUNNABLE || i->state > WEFT_TASK_PARKED ||
	    (i->state == WEFT_TASK_RUNNING) != (i->worker >= 0) ||
	    (i->state != WEFT_TASK_PARKED && i->wait != WEFT_WAIT_NONE) ||
	    !i->wait_name || !memchr(i->name, '\0', sizeof(i->name)) ||
	    (strcmp(i->name, "churn") && strcmp(i->name, "main")))
		atomic_fetch_add(&c->bad, 1);
	return 0;
}

static void *churn_thread(void *arg)
{
	struct churn *c = arg;

	while (!atomic_load(&c->stop)) {
		if (weft_tasks_foreach(c->rt, churn_visit, c) == 0)
			atomic_fetch_add(&c->walks, 1);
	}
	return NULL;
}

void *churn_task(void *arg)
{
	weft_chan *ch = arg;
	int i;

	for (i = 0; i < 20; i++) {
		weft_yield();
		weft_chan_send(ch, NULL);
	}
	return NULL;
}

void *churn_drain(void *arg)
{
	weft_chan *ch = arg;
	void *v;

	while (weft_chan_recv(ch, &v) == 0)
		;
	return NULL;
}

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	struct weft_spawn_opts o = { .name = "churn" };
	weft_chan *ch;
	weft_task *drain;
	pthread_t th;
	int round, i;

	c->rt = weft_runtime_self();
	WT_CHECK_EQ(weft_chan_create(&ch, 4), 0);
	WT_CHECK_EQ(weft_spawn_opts(&drain, churn_drain, ch, &o), 0);
	WT_CHECK_EQ(pthread_create(&th, NULL, churn_thread, c), 0);
	for (round = 0; round < 30; round++) {
		weft_task *t[16];

		for (i = 0; i < 16; i++)
			WT_CHECK_EQ(weft_spawn_opts(&t[i], churn_task, ch, &o),
				    0);
		for (i = 0; i < 16; i++) {
			weft_await(t[i], NULL);
			weft_task_release(t[i]);
		}
	}
	/* At least a few walks overlapped the churn. */
	while (atomic_load(&c->walks) < 5)
		weft_sleep(WEFT_NSEC_PER_MSEC);
	atomic_store(&c->stop, 1);
	weft_chan_close(ch);
	weft_await(drain, NULL);
	weft_task_release(drain);
	weft_chan_destroy(ch);
	pthread_join(th, NULL);
	return NULL;
}

Test(debug, foreach_from_a_thread_while_tasks_churn,
     .timeout = WT_TIMEOUT(30))
{
	struct churn c;

	memset(&c, 0, sizeof(c));
	wt_run(churn_main, &c, 2);
	cr_assert_geq(atomic_load(&c.walks), 5);
	cr_assert_gt(atomic_load(&c.seen), 0);
	cr_assert_eq(atomic_load(&c.bad), 0, "%d odd snapshots",
		     atomic_load(&c.bad));
}

static int stop_after_one(const struct weft_task_info *i, void *arg)
{
	(void)i;
	++*(int *)arg;
	return 7;
}

static void *foreach_args_main(void *arg)
{
	int n = 0;

	(void)arg;
	WT_CHECK_EQ(weft_tasks_foreach(NULL, NULL, NULL), -EINVAL);
	WT_CHECK_EQ(weft_dump(NULL, NULL), -EINVAL);
	/* fn's non-zero value stops the walk and comes back. */
	WT_CHECK_EQ(weft_tasks_foreach(NULL, stop_after_one, &n), 7);
	WT_CHECK_EQ(n, 1);
	return NULL;
}

Test(debug, foreach_stops_on_non_zero_and_refuses_bad_arguments,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(foreach_args_main, NULL, 1);
	/* Outside a runtime, no runtime named. */
	cr_assert_eq(weft_tasks_foreach(NULL, count_visit, NULL), -EINVAL);
	cr_assert_eq(weft_dump(NULL, stdout), -EINVAL);
}

/* ---- the deadlock hint ---------------------------------------------------- */

struct pair {
	weft_chan *a, *b;
};

void *dbg_ab(void *arg)
{
	struct pair *p = arg;
	void *v;

	if (weft_chan_recv(p->a, &v) == 0)
		weft_chan_send(p->b, NULL);
	return NULL;
}

void *dbg_ba(void *arg)
{
	struct pair *p = arg;
	void *v;

	weft_chan_recv(p->b, &v);
	return NULL;
}

static char hint_text[32768];

static void *hint_alive_main(void *arg)
{
	struct pair p;
	weft_task *t[3];
	char *d;
	int i;

	(void)arg;
	WT_CHECK_EQ(weft_chan_create(&p.a, 0), 0);
	WT_CHECK_EQ(weft_chan_create(&p.b, 0), 0);
	t[0] = spawn_named("ab", dbg_ab, &p);
	t[1] = spawn_named("ba", dbg_ba, &p);
	t[2] = spawn_named("sleeper", dbg_sleeper, NULL);
	WT_CHECK_EQ(wait_parked(3), 3);
	d = dump_string(NULL);
	snprintf(hint_text, sizeof(hint_text), "%s", d ? d : "");
	free(d);
	for (i = 0; i < 3; i++) {
		weft_cancel(t[i]);
		weft_await(t[i], NULL);
		weft_task_release(t[i]);
	}
	weft_chan_destroy(p.a);
	weft_chan_destroy(p.b);
	return NULL;
}

/* A runtime whose tasks are all asleep (main awaits ab, ab waits on a,
 * which only ba's... nobody sends to) is dumped from a thread; that
 * thread then sends on a itself, which ends it. */
static struct pair stuck_pair;

static void *hint_stuck_main(void *arg)
{
	weft_task *t1, *t2;

	(void)arg;
	t1 = spawn_named("ab", dbg_ab, &stuck_pair);
	t2 = spawn_named("ba", dbg_ba, &stuck_pair);
	WT_CHECK_EQ(weft_await(t1, NULL), 0);
	WT_CHECK_EQ(weft_await(t2, NULL), 0);
	weft_task_release(t1);
	weft_task_release(t2);
	return NULL;
}

struct runner {
	weft_runtime *rt;
	int rc;
};

static void *run_thread(void *arg)
{
	struct runner *r = arg;

	r->rc = weft_runtime_run(r->rt, hint_stuck_main, NULL, NULL);
	return NULL;
}

Test(debug, dump_says_deadlock_only_when_every_task_waits_on_another,
     .timeout = WT_TIMEOUT(30))
{
	struct runner r = { NULL, -1 };
	pthread_t th;
	bool seen = false;
	char *d;
	int i;

	/* Alive: a sleeper (a timer will wake it) among them. */
	wt_run(hint_alive_main, NULL, 2);
	cr_assert(strstr(hint_text, "'ab' [chan recv"), "%s", hint_text);
	cr_assert(!strstr(hint_text, "deadlock"), "%s", hint_text);

	/* Stuck. */
	cr_assert_eq(weft_chan_create(&stuck_pair.a, 0), 0);
	cr_assert_eq(weft_chan_create(&stuck_pair.b, 0), 0);
	cr_assert_eq(weft_runtime_create(&r.rt, NULL), 0);
	cr_assert_eq(pthread_create(&th, NULL, run_thread, &r), 0);
	for (i = 0; i < 1000 && !seen; i++) {
		d = dump_string(r.rt);
		cr_assert(d);
		snprintf(hint_text, sizeof(hint_text), "%s", d);
		free(d);
		seen = strstr(hint_text, "all tasks are asleep - deadlock?");
		if (!seen)
			usleep(5000);
	}
	cr_assert(seen, "no hint; last dump: %s", hint_text);
	cr_assert(strstr(hint_text, "'main' [await task "), "%s", hint_text);
	/* From outside, which the hint allows for: it ends the wait. */
	cr_assert_eq(weft_chan_send(stuck_pair.a, NULL), 0);
	pthread_join(th, NULL);
	cr_assert_eq(r.rc, 0);
	weft_runtime_destroy(r.rt);
	weft_chan_destroy(stuck_pair.a);
	weft_chan_destroy(stuck_pair.b);
	wt_assert_no_failures();
}

/* ---- select's wait ---------------------------------------------------------
 * WEFT_WAIT_SELECT's arg is the number of descriptor cases (weft.h): a
 * select on channels alone has 0, and is one only a task (or a thread) can
 * end, which the deadlock hint counts on. */

struct sel_scene {
	weft_chan *ch;
	int fd;
};

void *dbg_chan_chooser(void *arg)
{
	struct sel_scene *s = arg;
	struct weft_sel c[2] = {
		{ .chan = s->ch, .op = WEFT_SEL_RECV },
		{ .chan = s->ch, .op = WEFT_SEL_RECV },
	};

	weft_select(c, 2, WEFT_NEVER);
	return NULL;
}

void *dbg_fd_chooser(void *arg)
{
	struct sel_scene *s = arg;
	struct weft_sel c[3] = {
		{ .chan = s->ch, .op = WEFT_SEL_RECV },
		{ .op = WEFT_SEL_READABLE, .fd = s->fd },
		{ .chan = s->ch, .op = WEFT_SEL_RECV },
	};

	weft_select(c, 3, WEFT_NEVER);
	return NULL;
}

struct sel_seen {
	int64_t chan_arg, fd_arg;
	int chan_wait, fd_wait;
};

static int sel_visit(const struct weft_task_info *i, void *arg)
{
	struct sel_seen *v = arg;

	if (!strcmp(i->name, "chan-chooser")) {
		v->chan_wait = i->wait;
		v->chan_arg = i->wait_arg;
	} else if (!strcmp(i->name, "fd-chooser")) {
		v->fd_wait = i->wait;
		v->fd_arg = i->wait_arg;
	}
	return 0;
}

static char sel_text[32768];
static struct sel_seen sel_seen;

static void *sel_main(void *arg)
{
	struct sel_scene s;
	weft_task *t[2];
	int sv[2], i;
	char *d;

	(void)arg;
	WT_CHECK_EQ(weft_chan_create(&s.ch, 0), 0);
	WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s.fd = sv[0];
	t[0] = spawn_named("chan-chooser", dbg_chan_chooser, &s);
	t[1] = spawn_named("fd-chooser", dbg_fd_chooser, &s);
	WT_CHECK_EQ(wait_parked(2), 2);
	memset(&sel_seen, 0, sizeof(sel_seen));
	WT_CHECK_EQ(weft_tasks_foreach(NULL, sel_visit, &sel_seen), 0);
	d = dump_string(NULL);
	snprintf(sel_text, sizeof(sel_text), "%s", d ? d : "");
	free(d);
	WT_CHECK_EQ(weft_chan_close(s.ch), 0);
	for (i = 0; i < 2; i++) {
		weft_await(t[i], NULL);
		weft_task_release(t[i]);
	}
	weft_chan_destroy(s.ch);
	close(sv[0]);
	close(sv[1]);
	return NULL;
}

Test(debug, select_wait_counts_its_descriptor_cases,
     .timeout = WT_TIMEOUT(30))
{
	char e[4096];

	wt_run(sel_main, NULL, 2);
	cr_assert_eq(sel_seen.chan_wait, WEFT_WAIT_SELECT);
	cr_assert_eq(sel_seen.chan_arg, 0);
	cr_assert_eq(sel_seen.fd_wait, WEFT_WAIT_SELECT);
	cr_assert_eq(sel_seen.fd_arg, 1);
	cr_assert(dump_entry(sel_text, "chan-chooser", e, sizeof(e)), "%s",
		  sel_text);
	cr_assert(strstr(e, "[select, "), "%s", e);
	cr_assert(dump_entry(sel_text, "fd-chooser", e, sizeof(e)), "%s",
		  sel_text);
	cr_assert(strstr(e, "[select (with fds), "), "%s", e);
	wt_assert_no_failures();
}

/* ---- a listener's wait -------------------------------------------------
 * weft_listener_accept() parks on its queue (io_uring's multishot
 * accept) or, where nothing is queued, in a weft_accept(): either way an
 * accept on the listening descriptor, never a reason left unset. */

static int acc_fd;
static struct weft_task_info acc_info;
static bool acc_seen;

void *dbg_acceptor(void *arg)
{
	weft_listener *l;

	(void)arg;
	if (!WT_CHECK_EQ(weft_listener_open(&l, acc_fd, 0), 0))
		return NULL;
	weft_listener_accept(l, NULL, NULL, 0); /* until cancelled */
	weft_listener_close(l);
	return NULL;
}

static int acc_visit(const struct weft_task_info *i, void *arg)
{
	(void)arg;
	if (!strcmp(i->name, "acceptor") && i->state == WEFT_TASK_PARKED) {
		acc_info = *i;
		acc_seen = true;
	}
	return 0;
}

static void *acc_main(void *arg)
{
	weft_task *t;
	int i;

	(void)arg;
	acc_fd = weft_tcp_listen("127.0.0.1", 0, 16, 0);
	if (!WT_CHECK(acc_fd >= 0))
		return NULL;
	t = spawn_named("acceptor", dbg_acceptor, NULL);
	for (i = 0; i < 2000 && !acc_seen; i++) {
		weft_sleep(WEFT_NSEC_PER_MSEC);
		WT_CHECK_EQ(weft_tasks_foreach(NULL, acc_visit, NULL), 0);
	}
	weft_cancel(t);
	weft_await(t, NULL);
	weft_task_release(t);
	weft_close(acc_fd);
	return NULL;
}

Test(debug, listener_accept_waits_on_an_accept_of_its_descriptor,
     .timeout = WT_TIMEOUT(30))
{
	wt_run(acc_main, NULL, 2);
	cr_assert(acc_seen);
	if (acc_info.wait == WEFT_WAIT_IO) {
		cr_assert_eq((uint64_t)acc_info.wait_arg >> 32,
			     IORING_OP_ACCEPT);
	} else {
		cr_assert_eq(acc_info.wait, WEFT_WAIT_IO_EPOLL, "wait %d",
			     acc_info.wait);
	}
	cr_assert_eq((int)(uint32_t)acc_info.wait_arg, acc_fd);
	wt_assert_no_failures();
}

/* ---- a spawn site that ends with its task ----------------------------------
 * weft.h: a site lives as long as its task. weft_dump() prints after its
 * walk, by which time a task seen in the walk may have ended: what it
 * prints was copied while the task was seen alive. The dump's stream ends
 * the task (and overwrites its site) at the dump's first write, which
 * comes after the walk. */

static char *site_heap;
static weft_chan *site_ch;
static weft_task *site_task;
static atomic_int site_dumped;
static char site_text[32768];
static size_t site_len;
static bool site_ended;

void *dbg_site_waiter(void *arg)
{
	void *v;

	(void)arg;
	weft_chan_recv(site_ch, &v);
	return NULL;
}

static ssize_t site_write(void *c, const char *buf, size_t n)
{
	(void)c;
	if (!site_ended) {
		site_ended = true;
		weft_chan_send(site_ch, NULL);
		weft_join(site_task, NULL);
		strcpy(site_heap, "OVERWRITTEN");
	}
	if (n > sizeof(site_text) - 1 - site_len)
		n = sizeof(site_text) - 1 - site_len;
	memcpy(site_text + site_len, buf, n);
	site_len += n;
	return (ssize_t)n;
}

static void *site_dumper(void *arg)
{
	cookie_io_functions_t io = { .write = site_write };
	FILE *f = fopencookie(NULL, "w", io);

	if (f) {
		setvbuf(f, NULL, _IONBF, 0);
		weft_dump(arg, f);
		fclose(f);
	}
	atomic_store(&site_dumped, 1);
	return NULL;
}

static void *site_main(void *arg)
{
	struct weft_spawn_opts o = { .name = "site-waiter" };
	pthread_t th;

	(void)arg;
	site_heap = malloc(64);
	strcpy(site_heap, "heap.c:77");
	WT_CHECK_EQ(weft_chan_create(&site_ch, 0), 0);
	WT_CHECK_EQ(weft_spawn_opts_at(&site_task, dbg_site_waiter, NULL, &o,
				       site_heap),
		    0);
	WT_CHECK_EQ(wait_parked(1), 1);
	WT_CHECK_EQ(pthread_create(&th, NULL, site_dumper,
				   weft_runtime_self()),
		    0);
	while (!atomic_load(&site_dumped))
		weft_sleep(WEFT_NSEC_PER_MSEC);
	pthread_join(th, NULL);
	weft_task_release(site_task);
	weft_chan_destroy(site_ch);
	free(site_heap);
	return NULL;
}

Test(debug, dump_prints_the_site_a_task_had_when_it_was_seen,
     .timeout = WT_TIMEOUT(30))
{
	wt_run(site_main, NULL, 2);
	cr_assert(site_ended);
	cr_assert(strstr(site_text, "'site-waiter' ["), "%s", site_text);
	cr_assert(strstr(site_text, "spawned at heap.c:77,"), "%s",
		  site_text);
	cr_assert(!strstr(site_text, "OVERWRITTEN"), "%s", site_text);
	wt_assert_no_failures();
}

/* ---- the dump signal ------------------------------------------------------ */

static char sig_path[] = "/tmp/weft-dump-XXXXXX";

static void *sig_main(void *arg)
{
	weft_task *t = spawn_named("napper", dbg_sleeper, NULL);
	char buf[8192];
	int fd = *(int *)arg, i;
	ssize_t n = 0;

	WT_CHECK_EQ(wait_parked(1), 1);
	kill(getpid(), SIGUSR1);
	/* The dump comes from the runtime's thread; the program goes on. */
	for (i = 0; i < 2000; i++) {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		if (n > 0) {
			buf[n] = '\0';
			if (strstr(buf, "end of weft dump"))
				break;
		}
		weft_sleep(WEFT_NSEC_PER_MSEC);
	}
	WT_CHECK(n > 0 && strstr(buf, "'napper' [sleep until +"));
	WT_CHECK(n > 0 && strstr(buf, "dbg_sleeper+"));
	weft_cancel(t);
	weft_await(t, NULL);
	weft_task_release(t);
	return NULL;
}

Test(debug, dump_signal_prints_to_stderr_and_the_program_goes_on,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c;
	int fd, saved;
	struct sigaction before, after;

	fd = mkstemp(sig_path);
	cr_assert_geq(fd, 0);
	unlink(sig_path);
	saved = dup(2);
	dup2(fd, 2);
	sigaction(SIGUSR1, NULL, &before);
	memset(&c, 0, sizeof(c));
	c.workers = 2;
	c.dump_signal = SIGUSR1;
	cr_assert_eq(weft_run(sig_main, &fd, &c, NULL), 0);
	dup2(saved, 2);
	close(saved);
	close(fd);
	wt_assert_no_failures();
	/* The disposition is the program's again. */
	sigaction(SIGUSR1, NULL, &after);
	cr_assert(after.sa_handler == before.sa_handler);
	WT_LEAK_ASSERT();
}

#if !defined(__SANITIZE_THREAD__) /* the test below only: TSan intercepts eventfd */
/* The dump thread's eventfd as descriptor 0, as in a program that closed
 * its standard input before starting weft. This eventfd() stands in for
 * the C library's (the tests link weft statically, so weft's calls come
 * here): while efd_to_zero is set, the first non-blocking eventfd made is
 * moved onto descriptor 0 (dup3 closes what was there). On the io_uring
 * reactor that is the dump thread's: the rings' wake eventfds and the
 * signal eventfd block. (On the epoll reactor it is worker 0's wake
 * eventfd, and the dump's lands elsewhere.) */
static atomic_int efd_to_zero, efd_moved;

int eventfd(unsigned int initval, int flags)
{
	int fd = (int)syscall(SYS_eventfd2, initval, flags);

	if (fd > 0 && (flags & EFD_NONBLOCK) &&
	    atomic_exchange(&efd_to_zero, 0) &&
	    dup3(fd, 0, (flags & EFD_CLOEXEC) ? O_CLOEXEC : 0) == 0) {
		close(fd);
		fd = 0;
		atomic_fetch_add(&efd_moved, 1);
	}
	return fd;
}

static void *sig_main_at_zero(void *arg)
{
	/* Where it matters: the dump's eventfd is descriptor 0. */
	WT_CHECK_EQ(atomic_load(&efd_moved), 1);
	return sig_main(arg);
}

/* The handler took descriptor 0 for a free slot and wrote nothing: no
 * dump came (and a second runtime could have claimed the same slot). */
Test(debug, dump_signal_works_when_its_eventfd_is_descriptor_0,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c;
	int fd, saved;

	fd = mkstemp(sig_path);
	cr_assert_geq(fd, 0);
	unlink(sig_path);
	saved = dup(2);
	dup2(fd, 2);
	memset(&c, 0, sizeof(c));
	c.workers = 2;
	c.dump_signal = SIGUSR1;
	atomic_store(&efd_to_zero, 1);
	cr_assert_eq(weft_run(sig_main_at_zero, &fd, &c, NULL), 0);
	dup2(saved, 2);
	close(saved);
	close(fd);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}
#endif

#if !defined(__SANITIZE_THREAD__) /* the test below only: fork with threads */
/* A child forked while the runtime dumps on SIGUSR1 gets the program's
 * own handler back (the parent's dump thread is not its), and SIGUSR1
 * there reaches that handler. */
static volatile sig_atomic_t usr1_mine_seen;

static void on_usr1_mine(int sig)
{
	(void)sig;
	usr1_mine_seen++;
}

static void *fork_child_main(void *arg)
{
	int *status = arg;
	pid_t pid = fork();

	if (pid == 0) {
		struct sigaction now;
		bool ok;

		sigaction(SIGUSR1, NULL, &now);
		ok = now.sa_handler == on_usr1_mine;
		raise(SIGUSR1);
		ok = ok && usr1_mine_seen == 1;
		_exit(ok ? 0 : 1);
	}
	if (!WT_CHECK(pid > 0))
		return NULL;
	WT_CHECK_EQ(waitpid(pid, status, 0), pid);
	return NULL;
}

Test(debug, a_forked_child_gets_the_dump_signal_disposition_back,
     .timeout = WT_TIMEOUT(30))
{
	struct sigaction mine, now;
	struct weft_config c;
	int status = -1;

	memset(&mine, 0, sizeof(mine));
	mine.sa_handler = on_usr1_mine;
	sigemptyset(&mine.sa_mask);
	cr_assert_eq(sigaction(SIGUSR1, &mine, NULL), 0);
	memset(&c, 0, sizeof(c));
	c.workers = 2;
	c.dump_signal = SIGUSR1;
	cr_assert_eq(weft_run(fork_child_main, &status, &c, NULL), 0);
	wt_assert_no_failures();
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the child still had weft's handler (status %#x)", status);
	/* And the parent has its own back after the stop, as before. */
	sigaction(SIGUSR1, NULL, &now);
	cr_assert(now.sa_handler == on_usr1_mine);
	cr_assert_eq(usr1_mine_seen, 0);
}
#endif

/* Two runtimes on one dump signal, stopped in the order they started (not
 * nested): the signal stays weft's while either runs, and the program's
 * own disposition comes back after the last. */
static volatile sig_atomic_t usr2_seen;

static void on_usr2(int sig)
{
	(void)sig;
	usr2_seen++;
}

Test(debug, dump_signal_shared_by_two_runtimes_is_restored_after_the_last,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c;
	struct sigaction mine, now;
	weft_runtime *a, *b;

	memset(&mine, 0, sizeof(mine));
	mine.sa_handler = on_usr2;
	sigemptyset(&mine.sa_mask);
	cr_assert_eq(sigaction(SIGUSR2, &mine, NULL), 0);
	memset(&c, 0, sizeof(c));
	c.workers = 1;
	c.dump_signal = SIGUSR2;
	cr_assert_eq(weft_runtime_create(&a, &c), 0);
	cr_assert_eq(weft_runtime_create(&b, &c), 0);
	sigaction(SIGUSR2, NULL, &now);
	cr_assert(now.sa_handler != on_usr2);
	weft_runtime_destroy(a);
	/* b still dumps on it: not the program's handler back yet. */
	sigaction(SIGUSR2, NULL, &now);
	cr_assert(now.sa_handler != on_usr2 && now.sa_handler != SIG_DFL);
	weft_runtime_destroy(b);
	sigaction(SIGUSR2, NULL, &now);
	cr_assert(now.sa_handler == on_usr2);
	raise(SIGUSR2);
	cr_assert_eq(usr2_seen, 1);
	signal(SIGUSR2, SIG_DFL);
	WT_LEAK_ASSERT();
}

/* A closed runtime has no workers nor blocks left to read: both calls say
 * so instead of reading freed memory. */
static int never_visit(const struct weft_task_info *i, void *arg)
{
	(void)i;
	(void)arg;
	return 1;
}

static int walk_res;

static void *walk_till_closed(void *arg)
{
	weft_runtime *rt = arg;
	FILE *f = fopen("/dev/null", "we");

	do {
		walk_res = weft_tasks_foreach(rt, count_visit,
					      &(struct count){ 0 });
		if (!walk_res && f)
			walk_res = weft_dump(rt, f);
	} while (!walk_res);
	if (f)
		fclose(f);
	return NULL;
}

Test(debug, dump_and_foreach_refuse_a_closed_runtime,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c;
	weft_runtime *rt;
	pthread_t th;
	char *d;

	memset(&c, 0, sizeof(c));
	c.workers = 2;
	cr_assert_eq(weft_runtime_create(&rt, &c), 0);
	/* Created and not run: its (idle) workers are there to dump. */
	d = dump_string(rt);
	cr_assert(d && strstr(d, "2 workers, 0 tasks"), "%s", d ? d : "");
	free(d);
	cr_assert_eq(weft_tasks_foreach(rt, never_visit, NULL), 0);
	/* A thread walks it over and over while it closes: each walk is
	 * whole, or refused once the close frees what it reads. */
	cr_assert_eq(pthread_create(&th, NULL, walk_till_closed, rt), 0);
	usleep(20000);
	cr_assert_eq(weft_runtime_close(rt), 0);
	pthread_join(th, NULL);
	cr_assert_eq(walk_res, -ESHUTDOWN);
	cr_assert_eq(weft_dump(rt, stderr), -ESHUTDOWN);
	cr_assert_eq(weft_tasks_foreach(rt, never_visit, NULL), -ESHUTDOWN);
	weft_runtime_destroy(rt);
	WT_LEAK_ASSERT();
}

/* The dump signal may land on a worker whose task has little stack left:
 * its handler runs on the worker's alternate signal stack, so the
 * signal's frame (a few KiB with AVX-512 state) does not overflow the
 * task. The task raises the signal itself, 5 KiB from its stack's end.
 * Not under TSan, which runs a handler later, from its interceptor, on
 * whatever stack the task is on. */
#if !defined(__SANITIZE_THREAD__)
#define DEEP_STACK (32u * 1024u)
/* What the task leaves of its stack when it raises: room for raise(),
 * not for the signal's frame on top (measured here, Debug build,
 * AVX-512: raise() needs about 3.5 KiB of it, raise() and the frame
 * 7 KiB). */
#define DEEP_LEFT 5120u

__attribute__((noinline)) static void deep_raise(char *top, size_t want)
{
	volatile char pad[128];
	char *here = __builtin_frame_address(0);

	pad[0] = 0;
	if ((size_t)(top - here) < want)
		deep_raise(top, want);
	else
		raise(SIGUSR1);
	pad[1] = pad[0]; /* not a tail call */
}

static void *deep_raiser(void *arg)
{
	(void)arg;
	deep_raise(__builtin_frame_address(0), DEEP_STACK - DEEP_LEFT);
	return (void *)1;
}

static void *deep_sig_main(void *arg)
{
	struct weft_spawn_opts o = { .name = "deep",
				     .stack_size = DEEP_STACK };
	weft_task *t;
	void *r = NULL;

	(void)arg;
	WT_CHECK_EQ(weft_spawn_opts(&t, deep_raiser, NULL, &o), 0);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK(r == (void *)1);
	weft_task_release(t);
	return NULL;
}

Test(debug, dump_signal_on_a_task_near_its_stack_end_does_not_overflow_it,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c;
	int fd, saved;
	char path[] = "/tmp/weft-dump-XXXXXX";

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	saved = dup(2);
	dup2(fd, 2);
	memset(&c, 0, sizeof(c));
	c.workers = 2;
	c.dump_signal = SIGUSR1;
	cr_assert_eq(weft_run(deep_sig_main, NULL, &c, NULL), 0);
	dup2(saved, 2);
	close(saved);
	close(fd);
	wt_assert_no_failures();
}
#endif

/* ---- the abort ------------------------------------------------------------ */

#if !defined(__SANITIZE_THREAD__)
static void *abort_main(void *arg)
{
	struct pair p;
	weft_task *t;

	(void)arg;
	weft_chan_create(&p.a, 0);
	weft_chan_create(&p.b, 0);
	t = spawn_named("ab", dbg_ab, &p);
	weft_await(t, NULL); /* for ever */
	return NULL;
}

/* In a child: the runtime aborts, and says why, with the dump. */
static void abort_child(unsigned stall_ms);

Test(debug, abort_on_deadlock_dumps_and_aborts, .timeout = WT_TIMEOUT(30))
{
	abort_child(0);
}

/* The stall watchdog's thread (stall reports on) is the runtime's own,
 * not a thread that could end the waits. */
Test(debug, abort_on_deadlock_with_stall_reports_on,
     .timeout = WT_TIMEOUT(30))
{
	abort_child(10000);
}

static void abort_child(unsigned stall_ms)
{
	char buf[16384];
	size_t n = 0;
	ssize_t r;
	int fds[2], st;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct weft_config c;

		dup2(fds[1], 2);
		close(fds[0]);
		memset(&c, 0, sizeof(c));
		c.workers = 2;
		c.flags = WEFT_RUN_ABORT_ON_DEADLOCK;
		c.stall_ms = stall_ms;
		alarm(10); /* no abort: SIGALRM ends it */
		weft_run(abort_main, NULL, &c, NULL);
		_exit(3);
	}
	close(fds[1]);
	while (n < sizeof(buf) - 1 &&
	       (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
		  "status %#x: %s", st, buf);
	cr_assert(strstr(buf, "WEFT_RUN_ABORT_ON_DEADLOCK"), "%s", buf);
	cr_assert(strstr(buf, "all tasks are asleep - deadlock?"), "%s", buf);
	cr_assert(strstr(buf, "'ab' [chan recv"), "%s", buf);
}

/* A runtime fed from a thread outside it is not aborted: the feeder woke
 * a task once, then waits two seconds (twice the abort's wait) before it
 * sends again. */
static weft_chan *fed;

static void *feeder(void *arg)
{
	(void)arg;
	weft_chan_send(fed, NULL);
	sleep(2);
	weft_chan_send(fed, NULL);
	return NULL;
}

static void *fed_main(void *arg)
{
	void *v;
	int i;

	(void)arg;
	for (i = 0; i < 2; i++)
		if (weft_chan_recv(fed, &v) != 0)
			return (void *)1;
	return NULL;
}

Test(debug, abort_on_deadlock_spares_a_runtime_fed_from_outside,
     .timeout = WT_TIMEOUT(30))
{
	int st;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct weft_config c;
		pthread_t th;
		void *res = (void *)2;

		memset(&c, 0, sizeof(c));
		c.workers = 2;
		c.flags = WEFT_RUN_ABORT_ON_DEADLOCK;
		weft_chan_create(&fed, 0);
		pthread_create(&th, NULL, feeder, NULL);
		weft_run(fed_main, NULL, &c, &res);
		pthread_join(th, NULL);
		_exit(res == NULL ? 0 : 4);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}
#endif

/* ---- spawn sites and dump_signal's refusals ------------------------------- */

struct sites {
	int line_spawn, line_opts, line_group;
	char site[3][128];
	weft_task *plain;
	int plain_seen, plain_has_no_site;
};

static int site_visit(const struct weft_task_info *i, void *arg)
{
	struct sites *s = arg;
	int k = !strcmp(i->name, "task") ? 0 : !strcmp(i->name, "opts") ? 1
		: !strcmp(i->name, "group task") ? 2 : -1;

	if (i->task == s->plain) {
		s->plain_seen++;
		s->plain_has_no_site = i->site == NULL;
		return 0;
	}
	if (k >= 0)
		snprintf(s->site[k], sizeof(s->site[k]), "%s", i->site);
	return 0;
}

static void *sites_main(void *arg)
{
	struct sites *s = arg;
	weft_task *(*plain)(weft_fn, void *) = &weft_spawn; /* the function */
	struct weft_spawn_opts o = { .name = "opts" };
	weft_task *t[4];
	weft_group *g;
	int i;

	WT_CHECK_EQ(weft_group_create(&g), 0);
	s->line_spawn = __LINE__ + 1;
	t[0] = weft_spawn(dbg_sleeper, NULL);
	s->line_opts = __LINE__ + 1;
	WT_CHECK_EQ(weft_spawn_opts(&t[1], dbg_sleeper, NULL, &o), 0);
	s->line_group = __LINE__ + 1;
	WT_CHECK_EQ(weft_group_spawn(g, &t[2], dbg_sleeper, NULL), 0);
	/* Called as a function (a program built before the macros): no
	 * site, and it still works. */
	t[3] = s->plain = plain(dbg_sleeper, NULL);
	WT_CHECK(t[3] != NULL);
	WT_CHECK_EQ(wait_parked(4), 4);
	WT_CHECK_EQ(weft_tasks_foreach(NULL, site_visit, s), 0);
	for (i = 0; i < 4; i++) {
		weft_cancel(t[i]);
		weft_await(t[i], NULL);
		weft_task_release(t[i]);
	}
	weft_group_wait(g);
	weft_group_destroy(g);
	return NULL;
}

Test(debug, spawn_macros_record_the_call_site_and_the_functions_stay,
     .timeout = WT_TIMEOUT(20))
{
	struct sites s;
	char want[64];

	memset(&s, 0, sizeof(s));
	wt_run(sites_main, &s, 2);
	snprintf(want, sizeof(want), "test_debug.c:%d", s.line_spawn);
	cr_assert(strstr(s.site[0], want), "'%s', want %s", s.site[0], want);
	snprintf(want, sizeof(want), "test_debug.c:%d", s.line_opts);
	cr_assert(strstr(s.site[1], want), "'%s', want %s", s.site[1], want);
	snprintf(want, sizeof(want), "test_debug.c:%d", s.line_group);
	cr_assert(strstr(s.site[2], want), "'%s', want %s", s.site[2], want);
	cr_assert_eq(s.plain_seen, 1);
	cr_assert(s.plain_has_no_site);
}

static void *never_main(void *arg)
{
	(void)arg;
	return NULL;
}

Test(debug, dump_signal_refuses_what_the_runtime_or_kernel_needs,
     .timeout = WT_TIMEOUT(10))
{
	static const int bad[] = { -1, 0x10000, SIGKILL, SIGSTOP, SIGSEGV,
				   SIGBUS, SIGILL, SIGFPE, SIGPIPE, SIGURG };
	struct weft_config c;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&c, 0, sizeof(c));
		c.dump_signal = bad[i];
		cr_assert_eq(weft_run(never_main, NULL, &c, NULL), -EINVAL,
			     "signal %d accepted", bad[i]);
	}
	/* The stall reports' signal (docs/debugging.md): a dump there
	 * would take it from them. */
	memset(&c, 0, sizeof(c));
	c.dump_signal = SIGRTMIN + 4;
	cr_assert_eq(weft_run(never_main, NULL, &c, NULL), -EINVAL);
	/* The C library's own real-time signals (below SIGRTMIN), which
	 * sigaction() refuses: not a dump signal that silently never
	 * dumps. */
	for (i = 32; (int)i < SIGRTMIN; i++) {
		c.dump_signal = (int)i;
		cr_assert_eq(weft_run(never_main, NULL, &c, NULL), -EINVAL,
			     "signal %zu accepted", i);
	}
	memset(&c, 0, sizeof(c));
	c.flags = WEFT_RUN_STOP_ON_SIGNALS;
	c.dump_signal = SIGINT;
	cr_assert_eq(weft_run(never_main, NULL, &c, NULL), -EINVAL);
	c.dump_signal = SIGTERM;
	cr_assert_eq(weft_run(never_main, NULL, &c, NULL), -EINVAL);
	/* SIGINT without the stop flag is the program's to give. */
	c.flags = 0;
	c.dump_signal = SIGINT;
	cr_assert_eq(weft_run(never_main, NULL, &c, NULL), 0);
	WT_LEAK_ASSERT();
}
#endif /* WT_REGISTRY */
