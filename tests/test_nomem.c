/*
 * Out of memory: every allocation a call makes fails in turn, and the call
 * must then return -ENOMEM (or succeed, where it can do without), leave
 * nothing behind (memory: LeakSanitizer in the ASan build; descriptors;
 * processes) and leave the runtime working.
 *
 * The failures come from the library's allocation hook
 * (weft__mem_debug_fail() in runtime/misc.c): a walk arms it to let k
 * allocations pass and fail the next, runs the call, and goes on with
 * k + 1 until a run injects no failure, so each allocation the call makes
 * fails once. State a call keeps (a slab of task blocks, cached stacks)
 * stays between steps, so the walk always moves on to the allocations the
 * call still needs.
 */
#include "weft_test.h"

#include <sys/socket.h>

WT_SUITE(nomem, 120);

/* The hook (runtime/misc.c): hidden in the shared library, reachable from
 * the tests, which link the static one. */
void weft__mem_debug_fail(long skip, long n);
unsigned long weft__mem_debug_fail_hits(void);

#define WALK_MAX 400
#define WT_CHECK_GT(a, b) WT_CHECK((a) > (b))

typedef int (*walk_op)(void *state);

/*
 * Runs op(state) with its k-th allocation failing, k = 0, 1, ... until a
 * run injects none, which must then return 0. A run that had a failure
 * injected must return 0 or -ENOMEM. Returns how many runs returned
 * -ENOMEM. Task context or a plain thread: checks are WT_CHECKs.
 */
static int walk(const char *what, walk_op op, void *state)
{
	int enomem = 0;
	long k;

	for (k = 0; k < WALK_MAX; k++) {
		unsigned long hits;
		int rc;

		weft__mem_debug_fail(k, 1);
		rc = op(state);
		hits = weft__mem_debug_fail_hits();
		weft__mem_debug_fail(-1, 0);
		if (!hits) {
			if (!WT_CHECK_EQ(rc, 0))
				fprintf(stderr, "%s: %d with no failure\n",
					what, rc);
			if (getenv("WT_NOMEM_VERBOSE"))
				fprintf(stderr, "%s: %ld allocations failed, "
					"%d calls returned -ENOMEM\n", what, k,
					enomem);
			return enomem;
		}
		if (rc == -ENOMEM)
			enomem++;
		else if (!WT_CHECK_EQ(rc, 0))
			fprintf(stderr, "%s: allocation %ld failed: %d (%s)\n",
				what, k, rc, weft_strerror(rc));
	}
	WT_CHECK(!"the walk did not end: the call allocates without end");
	return enomem;
}

/* ---- start-up --------------------------------------------------------- */

static void *mark_ran(void *arg)
{
	atomic_store((atomic_int *)arg, 1);
	return arg;
}

struct run_state {
	int fds;
	int workers;
};

static int run_once(void *arg)
{
	struct run_state *s = arg;
	struct weft_config cfg = { .workers = (unsigned)s->workers };
	atomic_int ran = 0;
	void *res = NULL;
	int rc = weft_run(mark_ran, &ran, &cfg, &res);

	/* Out of memory is a start-up failure: main never ran. */
	if (rc == 0)
		WT_CHECK(atomic_load(&ran) && res == &ran);
	else
		WT_CHECK(!atomic_load(&ran));
	WT_CHECK_EQ(fd_count(), s->fds);
	return rc;
}

Test(nomem, weft_run_returns_enomem_for_each_failed_start_up_allocation,
     .timeout = WT_TIMEOUT(60))
{
	struct run_state s = { .fds = fd_count(), .workers = 3 };
	int enomem;

	/* Skips where io_uring is refused, like every runtime test. */
	wt_run(mark_ran, &(atomic_int){ 0 }, 1);
	enomem = walk("weft_run", run_once, &s);
	wt_assert_no_failures();
	cr_assert_gt(enomem, 0, "no start-up allocation was failed");
	/* And the process can still run a runtime. */
	wt_run(mark_ran, &(atomic_int){ 0 }, 2);
	WT_LEAK_ASSERT();
}

static int create_once(void *arg)
{
	struct run_state *s = arg;
	struct weft_config cfg = { .workers = (unsigned)s->workers };
	weft_runtime *rt = NULL;
	atomic_int ran = 0;
	int rc = weft_runtime_create(&rt, &cfg);

	/* What create made must work without help (the count of failures
	 * injected stays). */
	weft__mem_debug_fail(-1, 0);
	if (rc == 0) {
		WT_CHECK_EQ(weft_runtime_run(rt, mark_ran, &ran, NULL), 0);
		WT_CHECK(atomic_load(&ran));
		weft_runtime_destroy(rt);
	} else {
		WT_CHECK(rt == NULL);
	}
	WT_CHECK_EQ(fd_count(), s->fds);
	return rc;
}

Test(nomem, runtime_create_returns_enomem_for_each_failed_allocation,
     .timeout = WT_TIMEOUT(60))
{
	struct run_state s = { .fds = fd_count(), .workers = 2 };
	int enomem;

	wt_run(mark_ran, &(atomic_int){ 0 }, 1);
	enomem = walk("weft_runtime_create", create_once, &s);
	wt_assert_no_failures();
	cr_assert_gt(enomem, 0, "no allocation of weft_runtime_create failed");
	WT_LEAK_ASSERT();
}

/* ---- spawning --------------------------------------------------------- */

static void *ret_arg(void *arg)
{
	return arg;
}

/*
 * Awaits h, spawned with arg: 0 once it returned arg, or -ENOMEM when it
 * could not start (a task takes its stack when it first runs, so a spawn
 * that returned 0 can still end so; weft.h, weft_await()).
 */
static int await_started(weft_task *h, void *arg)
{
	void *res = NULL;
	int rc = weft_await(h, &res);

	weft_task_release(h);
	if (rc == -ENOMEM)
		return rc;
	WT_CHECK_EQ(rc, 0);
	WT_CHECK_PTR_EQ(res, arg);
	return rc;
}

/* A task with a stack of its own size: allocations for its record. */
static int spawn_own_stack(void *arg)
{
	struct weft_spawn_opts o = { .stack_size = 100 * 1024 };
	weft_task *h = NULL;
	int rc = weft_spawn_opts(&h, ret_arg, arg, &o);

	if (rc < 0) {
		WT_CHECK(h == NULL);
		return rc;
	}
	return await_started(h, arg);
}

/* Enough parked tasks at once that spawning needs new task-block slabs
 * and new stack slabs. */
#define MANY 300

static int spawn_many(void *arg)
{
	static weft_task *hs[MANY];
	struct wt_gate g = { .value = arg };
	int rc = 0, n, i;

	for (n = 0; n < MANY; n++) {
		rc = weft_spawn_opts(&hs[n], wt_gate_fn, &g, NULL);
		if (rc < 0)
			break;
	}
	atomic_store(&g.open, 1);
	for (i = 0; i < n; i++) {
		int r = await_started(hs[i], arg);
		if (!rc)
			rc = r;
	}
	return rc;
}

static int call_soon_once(void *arg)
{
	weft_task *h = NULL;
	int rc = weft_call_soon(&h, ret_arg, arg);

	if (rc < 0)
		return rc;
	return await_started(h, arg);
}

static int call_soon_threadsafe_once(void *arg)
{
	weft_task *h = NULL;
	int rc = weft_call_soon_threadsafe(weft_runtime_self(), &h, ret_arg,
					   arg);

	if (rc < 0)
		return rc;
	return await_started(h, arg);
}

static void *spawn_main(void *arg)
{
	int x;

	(void)arg;
	WT_CHECK_GT(walk("weft_spawn_opts, own stack size", spawn_own_stack,
			 &x), 0);
	WT_CHECK_GT(walk("weft_spawn_opts, 300 parked", spawn_many, &x), 0);
	walk("weft_call_soon", call_soon_once, &x);
	walk("weft_call_soon_threadsafe", call_soon_threadsafe_once, &x);
	/* Working afterwards: a fresh burst of tasks. */
	WT_CHECK_EQ(spawn_many(&x), 0);
	return NULL;
}

Test(nomem, spawn_returns_enomem_for_each_failed_allocation_and_runs_on,
     .timeout = WT_TIMEOUT(60))
{
	wt_run(spawn_main, NULL, 1);
}

/* ---- task-local storage ----------------------------------------------- */

struct tls_state {
	weft_tls_key key;
	long k;
	int rc;
	unsigned long hits;
};

/* The first weft_tls_set() of a task allocates its table: each try needs
 * a new task. */
static void *tls_try(void *arg)
{
	struct tls_state *s = arg;
	int v;

	weft__mem_debug_fail(s->k, 1);
	s->rc = weft_tls_set(s->key, &v);
	s->hits = weft__mem_debug_fail_hits();
	weft__mem_debug_fail(-1, 0);
	if (s->rc == -ENOMEM)
		WT_CHECK(weft_tls_get(s->key) == NULL);
	else
		WT_CHECK_PTR_EQ(weft_tls_get(s->key), &v);
	/* Not a lasting state: the next set can still allocate. */
	WT_CHECK_EQ(weft_tls_set(s->key, &v), 0);
	WT_CHECK_PTR_EQ(weft_tls_get(s->key), &v);
	return NULL;
}

static void *tls_main(void *arg)
{
	struct tls_state s = { .k = 0 };
	int enomem = 0;

	(void)arg;
	WT_CHECK_EQ(weft_tls_key_create(&s.key, NULL), 0);
	for (s.k = 0; s.k < WALK_MAX; s.k++) {
		weft_task *h = weft_spawn(tls_try, &s);
		WT_CHECK_EQ(weft_await(h, NULL), 0);
		weft_task_release(h);
		if (!s.hits) {
			WT_CHECK_EQ(s.rc, 0);
			break;
		}
		if (s.rc == -ENOMEM)
			enomem++;
		else
			WT_CHECK_EQ(s.rc, 0);
	}
	WT_CHECK_GT(enomem, 0);
	return NULL;
}

Test(nomem, tls_set_returns_enomem_and_stores_nothing)
{
	wt_run(tls_main, NULL, 1);
}

/* ---- coordination objects --------------------------------------------- */

static int future_once(void *arg)
{
	weft_future *f;
	void *v = NULL;
	int rc = weft_future_create(&f);

	if (rc < 0)
		return rc;
	WT_CHECK_EQ(weft_future_set(f, arg), 0);
	WT_CHECK_EQ(weft_future_await(f, &v), 0);
	WT_CHECK_PTR_EQ(v, arg);
	weft_future_destroy(f);
	return 0;
}

static int event_once(void *arg)
{
	weft_event *e;
	int rc = weft_event_create(&e);

	(void)arg;
	if (rc < 0)
		return rc;
	weft_event_set(e);
	WT_CHECK_EQ(weft_event_wait(e), 0);
	weft_event_destroy(e);
	return 0;
}

static int lock_once(void *arg)
{
	weft_lock *l;
	int rc = weft_lock_create(&l);

	(void)arg;
	if (rc < 0)
		return rc;
	WT_CHECK_EQ(weft_lock_acquire(l), 0);
	WT_CHECK_EQ(weft_lock_release(l), 0);
	weft_lock_destroy(l);
	return 0;
}

static int sem_once(void *arg)
{
	weft_sem *s;
	int rc = weft_sem_create(&s, 1, 0);

	(void)arg;
	if (rc < 0)
		return rc;
	WT_CHECK_EQ(weft_sem_acquire(s), 0);
	WT_CHECK_EQ(weft_sem_release(s), 0);
	weft_sem_destroy(s);
	return 0;
}

static int cond_once(void *arg)
{
	weft_cond *c;
	int rc = weft_cond_create(&c);

	(void)arg;
	if (rc < 0)
		return rc;
	WT_CHECK_EQ(weft_cond_notify_all(c), 0);
	weft_cond_destroy(c);
	return 0;
}

static int chan_once(void *arg)
{
	weft_chan *c;
	void *v = NULL;
	int rc = weft_chan_create(&c, 4);

	if (rc < 0)
		return rc;
	WT_CHECK_EQ(weft_chan_send(c, arg), 0);
	WT_CHECK_EQ(weft_chan_recv(c, &v), 0);
	WT_CHECK_PTR_EQ(v, arg);
	weft_chan_destroy(c);
	return 0;
}

/* An unbounded channel takes memory a chunk at a time as it grows: a send
 * (or a select's send) that needs a chunk and cannot get it returns
 * -ENOMEM, sends nothing, and the values before it are all there. */
static int unbounded_once(void *arg)
{
	struct weft_sel k;
	uintptr_t i, n = 0;
	weft_chan *c;
	void *v;
	int rc = weft_chan_create(&c, WEFT_CHAN_UNBOUNDED);

	(void)arg;
	if (rc < 0)
		return rc;
	/* Past two chunk boundaries (512 pointers a chunk): the second
	 * chunk is needed by a select, the others by a send. */
	for (i = 1; i <= 1100 && !rc; i++) {
		if ((i - 1) / 512 != 1) {
			rc = weft_chan_send(c, (void *)i);
		} else {
			k = (struct weft_sel){ .chan = c, .op = WEFT_SEL_SEND,
					       .value = (void *)i };
			if ((rc = weft_select(&k, 1, 0)) == 0)
				rc = k.result;
		}
		if (!rc)
			n++;
	}
	WT_CHECK_EQ(weft_chan_len(c), n);
	for (i = 1; i <= n; i++) {
		WT_CHECK_EQ(weft_chan_try_recv(c, &v), 0);
		WT_CHECK_PTR_EQ(v, i);
	}
	WT_CHECK_EQ(weft_chan_try_recv(c, &v), -EAGAIN);
	weft_chan_destroy(c);
	return rc;
}

/* A broadcast and a receiver: a subscribe that fails leaves no receiver
 * counted. */
static int bcast_once(void *arg)
{
	weft_bcast *b;
	weft_bcast_rx *rx;
	void *v = NULL;
	int rc = weft_bcast_create(&b, 2);

	if (rc < 0)
		return rc;
	if ((rc = weft_bcast_subscribe(b, &rx)) == 0) {
		WT_CHECK_EQ(weft_bcast_send(b, arg), 1);
		WT_CHECK_EQ(weft_bcast_recv(rx, &v), 0);
		WT_CHECK_PTR_EQ(v, arg);
		weft_bcast_unsubscribe(rx);
	} else {
		WT_CHECK_EQ(weft_bcast_send(b, arg), 0);
	}
	weft_bcast_destroy(b);
	return rc;
}

static int group_once(void *arg)
{
	weft_group *g;
	int rc = weft_group_create(&g), i, src = 0;

	if (rc < 0)
		return rc;
	for (i = 0; i < 3 && !src; i++)
		src = weft_group_spawn(g, NULL, ret_arg, arg);
	rc = weft_group_wait(g);
	/* A task that could not start fails the group with its error. */
	WT_CHECK_EQ(rc, src);
	weft_group_destroy(g);
	return rc;
}

static int gen_body(weft_gen *g, void *arg)
{
	return weft_gen_yield(g, arg);
}

static int gen_once(void *arg)
{
	weft_gen *g;
	void *v = NULL;
	int rc = weft_gen_create(&g, gen_body, arg);

	if (rc < 0)
		return rc;
	WT_CHECK_EQ(weft_gen_next(g, &v), 1);
	WT_CHECK_PTR_EQ(v, arg);
	weft_gen_destroy(g);
	return 0;
}

/* More than 8 cases: the select needs memory, and one that fails takes
 * nothing from the channels. */
#define NSEL 12

struct sel_state {
	weft_chan *c[NSEL];
};

static int select_once(void *arg)
{
	struct sel_state *s = arg;
	struct weft_sel cases[NSEL];
	void *v = NULL;
	int i, rc;

	for (i = 0; i < NSEL; i++)
		cases[i] = (struct weft_sel){ .chan = s->c[i],
					      .op = WEFT_SEL_RECV };
	WT_CHECK_EQ(weft_chan_try_send(s->c[NSEL - 1], s), 0);
	rc = weft_select(cases, NSEL, WEFT_NEVER);
	if (rc == -ENOMEM) {
		WT_CHECK_EQ(weft_chan_try_recv(s->c[NSEL - 1], &v), 0);
		WT_CHECK_PTR_EQ(v, s);
		return rc;
	}
	WT_CHECK_EQ(rc, NSEL - 1);
	WT_CHECK_PTR_EQ(cases[NSEL - 1].value, s);
	WT_CHECK_EQ(weft_chan_len(s->c[NSEL - 1]), 0);
	return rc < 0 ? rc : 0;
}

/* A listener (its queue is allocated at the open). */
static int listener_once(void *arg)
{
	weft_listener *l;
	int rc = weft_listener_open(&l, *(int *)arg, 0);

	if (rc < 0)
		return rc;
	return weft_listener_close(l);
}

static void *objects_main(void *arg)
{
	struct sel_state ss;
	int x, i;

	(void)arg;
	WT_CHECK_GT(walk("weft_future_create", future_once, &x), 0);
	WT_CHECK_GT(walk("weft_event_create", event_once, &x), 0);
	WT_CHECK_GT(walk("weft_lock_create", lock_once, &x), 0);
	WT_CHECK_GT(walk("weft_sem_create", sem_once, &x), 0);
	WT_CHECK_GT(walk("weft_cond_create", cond_once, &x), 0);
	WT_CHECK_GT(walk("weft_chan_create", chan_once, &x), 0);
	WT_CHECK_GT(walk("unbounded weft_chan_send", unbounded_once, &x), 2);
	WT_CHECK_GT(walk("weft_bcast_create, _subscribe", bcast_once, &x), 1);
	WT_CHECK_GT(walk("weft_group", group_once, &x), 0);
	WT_CHECK_GT(walk("weft_gen_create", gen_once, &x), 0);
	x = weft_tcp_listen("127.0.0.1", 0, 4, 0);
	if (WT_CHECK(x >= 0)) {
		WT_CHECK_GT(walk("weft_listener_open", listener_once, &x), 0);
		WT_CHECK_EQ(weft_close(x), 0);
	}
	for (i = 0; i < NSEL; i++)
		WT_CHECK_EQ(weft_chan_create(&ss.c[i], 1), 0);
	WT_CHECK_GT(walk("weft_select, 12 cases", select_once, &ss), 0);
	for (i = 0; i < NSEL; i++)
		weft_chan_destroy(ss.c[i]);
	return NULL;
}

Test(nomem, object_creation_returns_enomem_and_the_objects_work_after,
     .timeout = WT_TIMEOUT(60))
{
	wt_run(objects_main, NULL, 1);
}

/* ---- waiting on several tasks ----------------------------------------- */

struct ws_state {
	weft_task *h[3];
};

static int waitset_once(void *arg)
{
	struct ws_state *s = arg;
	weft_waitset *ws = NULL;
	int rc = weft_waitset_create(&ws, s->h, 3), seen = 0, i, r;

	if (rc < 0)
		return rc;
	for (i = 0; i < 3; i++) {
		r = weft_waitset_next(ws, WEFT_NEVER);
		if (WT_CHECK(r >= 0 && r < 3))
			seen |= 1 << r;
	}
	WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), -ENOENT);
	WT_CHECK_EQ(seen, 7);
	weft_waitset_destroy(ws);
	return 0;
}

static int wait_any_once(void *arg)
{
	struct ws_state *s = arg;
	int r = weft_wait_any(s->h, 3, WEFT_NEVER);

	if (r == -ENOMEM)
		return r;
	WT_CHECK(r >= 0 && r < 3);
	return r < 0 ? r : 0;
}

static void *waitset_main(void *arg)
{
	struct ws_state s;
	int x, i;

	(void)arg;
	for (i = 0; i < 3; i++) {
		s.h[i] = weft_spawn(ret_arg, &x);
		WT_CHECK_EQ(weft_await(s.h[i], NULL), 0);
	}
	WT_CHECK_GT(walk("weft_waitset_create", waitset_once, &s), 0);
	walk("weft_wait_any", wait_any_once, &s);
	for (i = 0; i < 3; i++)
		weft_task_release(s.h[i]);
	return NULL;
}

Test(nomem, waitset_create_returns_enomem_for_each_failed_allocation)
{
	wt_run(waitset_main, NULL, 1);
}

/* ---- subprocesses ----------------------------------------------------- */

static int proc_once(void *arg)
{
	char *argv[] = { "/bin/true", NULL };
	weft_proc *p = NULL;
	int code = -1, rc = weft_proc_spawn(&p, argv, NULL);

	(void)arg;
	if (rc < 0)
		return rc;
	WT_CHECK_EQ(weft_proc_wait(p, &code), 0);
	WT_CHECK_EQ(code, 0);
	weft_proc_destroy(p);
	return 0;
}

static void *proc_main(void *arg)
{
	int fds = fd_count();

	WT_CHECK_GT(walk("weft_proc_spawn", proc_once, arg), 0);
	/* Nothing left behind: no descriptor, no child (ECHILD: none). */
	WT_CHECK_EQ(fd_count(), fds);
	WT_CHECK_EQ(waitpid(-1, NULL, WNOHANG), -1);
	return NULL;
}

Test(nomem, proc_spawn_returns_enomem_and_leaves_no_child_or_descriptor)
{
	wt_run(proc_main, NULL, 1);
}
