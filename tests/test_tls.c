/*
 * Task-local storage: keys, per-task values across migration, destructors,
 * errors.
 */
#include <pthread.h>

#include "weft_test.h"

WT_SUITE(tls, 60);

/* ---- set, get ----------------------------------------------------------- */

struct basic {
	weft_tls_key key;
	void *before, *after, *after_null;
	int set_rc, set_null_rc, set_unset_null_rc;
	void *child_sees;
};

static void *child_get(void *arg)
{
	struct basic *b = arg;

	b->child_sees = weft_tls_get(b->key);
	return NULL;
}

static void *basic_main(void *arg)
{
	struct basic *b = arg;
	weft_task *t;
	int x;

	b->before = weft_tls_get(b->key);
	b->set_rc = weft_tls_set(b->key, &x);
	b->after = weft_tls_get(b->key);
	/* A child does not inherit the value. */
	b->child_sees = (void *)1;
	t = weft_spawn(child_get, b);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK(weft_tls_get(b->key) == &x);
	b->set_null_rc = weft_tls_set(b->key, NULL);
	b->after_null = weft_tls_get(b->key);
	return NULL;
}

Test(tls, set_then_get_returns_the_value, .timeout = WT_TIMEOUT(10))
{
	struct basic b;

	memset(&b, 0, sizeof(b));
	cr_assert_eq(weft_tls_key_create(&b.key, NULL), 0);
	cr_assert_lt(b.key, WEFT_TLS_KEYS);
	wt_run(basic_main, &b, 2);
	cr_assert_null(b.before, "get without set must be NULL");
	cr_assert_eq(b.set_rc, 0);
	cr_assert_not_null(b.after);
	cr_assert_null(b.child_sees, "a new task must see NULL");
	cr_assert_eq(b.set_null_rc, 0);
	cr_assert_null(b.after_null);
}

Test(tls, keys_are_distinct)
{
	weft_tls_key k[4];

	for (int i = 0; i < 4; i++) {
		cr_assert_eq(weft_tls_key_create(&k[i], NULL), 0);
		for (int j = 0; j < i; j++)
			cr_assert_neq(k[i], k[j]);
	}
	cr_assert_eq(weft_tls_key_create(NULL, NULL), -EINVAL);
}

/* ---- values are per task ------------------------------------------------ */

#define TLS_TASKS 8
#define TLS_YIELDS 2000

struct per_task {
	weft_tls_key key, key2;
	atomic_long wrong;
	atomic_long moves; /* times a task resumed on another worker */
};

struct pt_arg {
	struct per_task *p;
	long mine[2];
};

static void *per_task_fn(void *arg)
{
	struct pt_arg *a = arg;
	struct per_task *p = a->p;
	int w = weft_worker_index();

	WT_CHECK(weft_tls_get(p->key) == NULL);
	WT_CHECK_EQ(weft_tls_set(p->key, &a->mine[0]), 0);
	WT_CHECK_EQ(weft_tls_set(p->key2, &a->mine[1]), 0);
	for (int i = 0; i < TLS_YIELDS; i++) {
		int nw;

		if ((i & 7) == 0)
			wt_spin_us(2); /* let thieves see a busy worker */
		WT_CHECK_EQ(weft_yield(), 0);
		nw = weft_worker_index();
		if (nw != w)
			atomic_fetch_add(&p->moves, 1);
		w = nw;
		if (weft_tls_get(p->key) != &a->mine[0] ||
		    weft_tls_get(p->key2) != &a->mine[1])
			atomic_fetch_add(&p->wrong, 1);
	}
	return NULL;
}

static void *per_task_main(void *arg)
{
	struct per_task *p = arg;
	struct pt_arg a[TLS_TASKS];
	weft_task *ts[TLS_TASKS];

	for (int i = 0; i < TLS_TASKS; i++) {
		a[i].p = p;
		ts[i] = weft_spawn(per_task_fn, &a[i]);
	}
	WT_CHECK_EQ(weft_gather(ts, TLS_TASKS, NULL), 0);
	for (int i = 0; i < TLS_TASKS; i++)
		weft_task_release(ts[i]);
	/* main never set a value. */
	WT_CHECK(weft_tls_get(p->key) == NULL);
	return NULL;
}

Test(tls, values_are_per_task_and_follow_the_task_across_workers,
     .timeout = WT_TIMEOUT(30))
{
	static const unsigned ws[] = { 1, 2, 4 };
	struct per_task p;
	long moves = 0;

	memset(&p, 0, sizeof(p));
	cr_assert_eq(weft_tls_key_create(&p.key, NULL), 0);
	cr_assert_eq(weft_tls_key_create(&p.key2, NULL), 0);
	for (unsigned i = 0; i < 3; i++) {
		atomic_store(&p.moves, 0);
		wt_run(per_task_main, &p, ws[i]);
		cr_assert_eq(atomic_load(&p.wrong), 0,
			     "workers=%u: %ld reads saw another task's value",
			     ws[i], atomic_load(&p.wrong));
		moves += atomic_load(&p.moves);
	}
	cr_log_info("tasks resumed on another worker %ld times", moves);
}

/* ---- destructors -------------------------------------------------------- */

#define DTOR_TASKS 100

struct dtor_value {
	atomic_int destroyed;
	int id;
};

static atomic_long dtor_calls;
static atomic_long dtor_wrong_ctx;

static void count_dtor(void *v)
{
	struct dtor_value *d = v;

	atomic_fetch_add(&dtor_calls, 1);
	/* "the destructor runs ... in the task" */
	if (weft_self() == NULL)
		atomic_fetch_add(&dtor_wrong_ctx, 1);
	atomic_fetch_add(&d->destroyed, 1);
}

struct dtor_arg {
	weft_tls_key key, plain;
	struct dtor_value val;
	int set_null_before_end;
};

static void *dtor_task(void *arg)
{
	struct dtor_arg *a = arg;

	WT_CHECK_EQ(weft_tls_set(a->key, &a->val), 0);
	/* A key without destructor holds a value too: nothing to call. */
	WT_CHECK_EQ(weft_tls_set(a->plain, &a->val), 0);
	weft_yield();
	if (a->set_null_before_end)
		WT_CHECK_EQ(weft_tls_set(a->key, NULL), 0);
	return NULL;
}

static void *dtor_main(void *arg)
{
	struct dtor_arg *as = arg;
	weft_task *ts[DTOR_TASKS];

	for (int i = 0; i < DTOR_TASKS; i++)
		ts[i] = weft_spawn(dtor_task, &as[i]);
	for (int i = 0; i < DTOR_TASKS; i++) {
		WT_CHECK_EQ(weft_await(ts[i], NULL), 0);
		/* Destructors run before awaiters are woken. */
		WT_CHECK_EQ(atomic_load(&as[i].val.destroyed),
			    as[i].set_null_before_end ? 0 : 1);
		weft_task_release(ts[i]);
	}
	return NULL;
}

Test(tls, destructors_run_when_the_task_ends, .timeout = WT_TIMEOUT(20))
{
	struct dtor_arg *as = calloc(DTOR_TASKS, sizeof(*as));
	weft_tls_key key, plain;
	long want = 0;

	cr_assert_not_null(as);
	cr_assert_eq(weft_tls_key_create(&key, count_dtor), 0);
	cr_assert_eq(weft_tls_key_create(&plain, NULL), 0);
	for (int i = 0; i < DTOR_TASKS; i++) {
		as[i].key = key;
		as[i].plain = plain;
		as[i].val.id = i;
		as[i].set_null_before_end = (i % 10 == 0);
		want += !as[i].set_null_before_end;
	}
	wt_run(dtor_main, as, 2);
	cr_assert_eq(atomic_load(&dtor_calls), want,
		     "destructor ran %ld times, want %ld (one per non-NULL "
		     "value)",
		     atomic_load(&dtor_calls), want);
	cr_assert_eq(atomic_load(&dtor_wrong_ctx), 0);
	for (int i = 0; i < DTOR_TASKS; i++)
		cr_assert_eq(atomic_load(&as[i].val.destroyed),
			     as[i].set_null_before_end ? 0 : 1);
	free(as);
}

/* The main task's values are destroyed too when it ends. */
static atomic_int main_dtor;

static void main_dtor_fn(void *v)
{
	(void)v;
	atomic_fetch_add(&main_dtor, 1);
}

static void *main_dtor_main(void *arg)
{
	WT_CHECK_EQ(weft_tls_set(*(weft_tls_key *)arg, &main_dtor), 0);
	return NULL;
}

Test(tls, destructors_run_for_the_main_task, .timeout = WT_TIMEOUT(10))
{
	weft_tls_key key;

	cr_assert_eq(weft_tls_key_create(&key, main_dtor_fn), 0);
	wt_run(main_dtor_main, &key, 1);
	cr_assert_eq(atomic_load(&main_dtor), 1);
}

/*
 * weft.h: "the destructor (if any) runs on each non-NULL value, in the
 * task, before awaiters are woken": for every key that has one, with the
 * ending task itself as weft_self() (not the awaiter, not a task that
 * runs after it), and with that task's own value. Several keys with
 * destructors, and more than the destructor loop's rounds (4): one
 * destructor per round would leave some uncalled.
 */
#define EVERY_KEYS 6
#define EVERY_TASKS 40

struct every_value {
	weft_task *owner; /* the task that set it */
	int key;	  /* index of its key in every_keys[] */
	atomic_int calls;
	atomic_int wrong_task;
};

static weft_tls_key every_keys[EVERY_KEYS];

static void every_dtor(void *v)
{
	struct every_value *e = v;

	atomic_fetch_add(&e->calls, 1);
	if (weft_self() != e->owner)
		atomic_fetch_add(&e->wrong_task, 1);
}

static void *every_task(void *arg)
{
	struct every_value *vals = arg; /* EVERY_KEYS of them */

	for (int k = 0; k < EVERY_KEYS; k++) {
		vals[k].owner = weft_self();
		vals[k].key = k;
		WT_CHECK_EQ(weft_tls_set(every_keys[k], &vals[k]), 0);
	}
	/* Suspend once, so that the end may come on another worker. */
	WT_CHECK_EQ(weft_yield(), 0);
	return NULL;
}

static void *every_main(void *arg)
{
	struct every_value (*vals)[EVERY_KEYS] = arg;
	weft_task *ts[EVERY_TASKS];

	for (int i = 0; i < EVERY_TASKS; i++)
		ts[i] = weft_spawn(every_task, vals[i]);
	for (int i = 0; i < EVERY_TASKS; i++) {
		WT_CHECK_EQ(weft_await(ts[i], NULL), 0);
		/* Every destructor of that task has run by now. */
		for (int k = 0; k < EVERY_KEYS; k++)
			WT_CHECK_EQ(atomic_load(&vals[i][k].calls), 1);
		weft_task_release(ts[i]);
	}
	return NULL;
}

Test(tls, destructors_run_in_the_ending_task_for_every_key,
     .timeout = WT_TIMEOUT(20))
{
	static struct every_value vals[EVERY_TASKS][EVERY_KEYS];
	static const unsigned ws[] = { 1, 3 };

	for (int k = 0; k < EVERY_KEYS; k++)
		cr_assert_eq(weft_tls_key_create(&every_keys[k], every_dtor), 0);
	for (unsigned w = 0; w < 2; w++) {
		memset(vals, 0, sizeof(vals));
		wt_run(every_main, vals, ws[w]);
		for (int i = 0; i < EVERY_TASKS; i++)
			for (int k = 0; k < EVERY_KEYS; k++) {
				cr_assert_eq(atomic_load(&vals[i][k].calls), 1,
					     "workers=%u: task %d, key %d: "
					     "destructor ran %d times, want 1",
					     ws[w], i, k,
					     atomic_load(&vals[i][k].calls));
				cr_assert_eq(atomic_load(&vals[i][k].wrong_task),
					     0,
					     "workers=%u: task %d, key %d: "
					     "destructor ran in another task",
					     ws[w], i, k);
			}
	}
}

/* A recycled control block starts with no values. */
struct recycle {
	weft_tls_key key;
	int stale_seen;
};

static void *set_and_end(void *arg)
{
	struct recycle *r = arg;

	WT_CHECK_EQ(weft_tls_set(r->key, r), 0);
	return NULL;
}

static void *get_only(void *arg)
{
	struct recycle *r = arg;

	if (weft_tls_get(r->key) != NULL)
		r->stale_seen++;
	return NULL;
}

static void *recycle_main(void *arg)
{
	struct recycle *r = arg;

	for (int i = 0; i < 200; i++) {
		weft_task *t = weft_spawn((i & 1) ? get_only : set_and_end, r);
		WT_CHECK_EQ(weft_await(t, NULL), 0);
		weft_task_release(t);
	}
	return NULL;
}

Test(tls, a_new_task_never_sees_values_of_an_ended_one,
     .timeout = WT_TIMEOUT(10))
{
	struct recycle r;

	memset(&r, 0, sizeof(r));
	cr_assert_eq(weft_tls_key_create(&r.key, NULL), 0);
	wt_run(recycle_main, &r, 1);
	cr_assert_eq(r.stale_seen, 0);
}

/* ---- errors ------------------------------------------------------------- */

struct errs {
	weft_tls_key key;
	int big_rc, uncreated_rc, max_rc;
	void *big_get, *uncreated_get;
};

static void *errs_main(void *arg)
{
	struct errs *e = arg;
	int x;

	e->big_rc = weft_tls_set(WEFT_TLS_KEYS + 5, &x);
	e->max_rc = weft_tls_set((weft_tls_key)-1, &x);
	/* Keys are handed out in order: the next one is not created yet. */
	e->uncreated_rc = weft_tls_set(e->key + 1, &x);
	e->big_get = weft_tls_get(WEFT_TLS_KEYS + 5);
	e->uncreated_get = weft_tls_get(e->key + 1);
	return NULL;
}

Test(tls, bad_key_returns_einval, .timeout = WT_TIMEOUT(10))
{
	struct errs e;

	memset(&e, 0, sizeof(e));
	cr_assert_eq(weft_tls_key_create(&e.key, NULL), 0);
	wt_run(errs_main, &e, 1);
	cr_assert_eq(e.big_rc, -EINVAL);
	cr_assert_eq(e.max_rc, -EINVAL);
	cr_assert_eq(e.uncreated_rc, -EINVAL);
	cr_assert_null(e.big_get);
	cr_assert_null(e.uncreated_get);
}

struct outside {
	weft_tls_key key;
	int rc;
	void *get;
};

static void *outside_thread(void *arg)
{
	struct outside *o = arg;
	int x;

	o->rc = weft_tls_set(o->key, &x);
	o->get = weft_tls_get(o->key);
	return NULL;
}

static void *outside_main(void *arg)
{
	struct outside *o = arg;
	pthread_t th;

	WT_CHECK_EQ(weft_tls_set(o->key, o), 0);
	WT_CHECK_EQ(pthread_create(&th, NULL, outside_thread, o), 0);
	pthread_join(th, NULL);
	return NULL;
}

Test(tls, set_outside_a_task_returns_eperm, .timeout = WT_TIMEOUT(10))
{
	struct outside o;
	int x;

	memset(&o, 0, sizeof(o));
	cr_assert_eq(weft_tls_key_create(&o.key, NULL), 0);
	/* No runtime at all. */
	cr_assert_eq(weft_tls_set(o.key, &x), -EPERM);
	cr_assert_null(weft_tls_get(o.key));
	/* A foreign thread while a runtime runs. */
	o.rc = 0;
	o.get = (void *)1;
	wt_run(outside_main, &o, 2);
	cr_assert_eq(o.rc, -EPERM);
	cr_assert_null(o.get);
}

Test(tls, key_create_returns_eagain_when_all_keys_are_taken)
{
	weft_tls_key k;
	int made = 0, rc;

	/* Each test runs in its own process: this one's keys are its own. */
	while ((rc = weft_tls_key_create(&k, NULL)) == 0)
		made++;
	cr_assert_eq(rc, -EAGAIN);
	cr_assert_eq(made, WEFT_TLS_KEYS);
	cr_assert_eq(weft_tls_key_create(&k, NULL), -EAGAIN);
}

/* ---- deleting keys (issue 17: 64 keys per process, never returned) ----- */

Test(tls, a_deleted_key_is_invalid_and_its_place_can_be_taken_again)
{
	weft_tls_key keys[WEFT_TLS_KEYS], k2, k3;
	int x;

	for (int i = 0; i < WEFT_TLS_KEYS; i++)
		cr_assert_eq(weft_tls_key_create(&keys[i], NULL), 0);
	cr_assert_eq(weft_tls_key_create(&k2, NULL), -EAGAIN);
	cr_assert_eq(weft_tls_key_delete(keys[7]), 0);
	cr_assert_eq(weft_tls_key_delete(keys[7]), -EINVAL,
		     "a second delete of one key must be refused");
	cr_assert_eq(weft_tls_key_delete(12345678), -EINVAL);
	/* The place is free again; the new key is not the old one. */
	cr_assert_eq(weft_tls_key_create(&k2, NULL), 0);
	cr_assert_neq(k2, keys[7]);
	cr_assert_eq(weft_tls_key_create(&k3, NULL), -EAGAIN);
	/* The old key stays invalid, outside a task too. */
	cr_assert_eq(weft_tls_set(keys[7], &x), -EINVAL);
	cr_assert_null(weft_tls_get(keys[7]));
	cr_assert_eq(weft_tls_key_delete(keys[7]), -EINVAL);
	/* Many rounds of delete and create on one place. */
	for (int i = 0; i < 1000; i++) {
		weft_tls_key old = k2;
		cr_assert_eq(weft_tls_key_delete(k2), 0);
		cr_assert_eq(weft_tls_key_create(&k2, NULL), 0);
		cr_assert_neq(k2, old);
		cr_assert_eq(weft_tls_key_delete(old), -EINVAL);
	}
}

static atomic_int deleted_dtor_runs, kept_dtor_runs;

static void deleted_dtor(void *v)
{
	(void)v;
	atomic_fetch_add(&deleted_dtor_runs, 1);
}

static void kept_dtor(void *v)
{
	(void)v;
	atomic_fetch_add(&kept_dtor_runs, 1);
}

struct del {
	weft_tls_key old, fresh;
	int x, y;
};

static void *delete_in_task(void *arg)
{
	struct del *d = arg;

	WT_CHECK_EQ(weft_tls_key_create(&d->old, deleted_dtor), 0);
	WT_CHECK_EQ(weft_tls_set(d->old, &d->x), 0);
	WT_CHECK_PTR_EQ(weft_tls_get(d->old), &d->x);
	WT_CHECK_EQ(weft_tls_key_delete(d->old), 0);
	/* Gone at once, for this task too. */
	WT_CHECK(weft_tls_get(d->old) == NULL);
	WT_CHECK_EQ(weft_tls_set(d->old, &d->x), -EINVAL);
	/* The place's next key starts with NULL here, not with the value
	 * stored under the deleted one. */
	WT_CHECK_EQ(weft_tls_key_create(&d->fresh, kept_dtor), 0);
	WT_CHECK(weft_tls_get(d->fresh) == NULL);
	WT_CHECK_EQ(weft_tls_set(d->fresh, &d->y), 0);
	WT_CHECK_PTR_EQ(weft_tls_get(d->fresh), &d->y);
	return NULL;
}

static void *delete_main(void *arg)
{
	weft_task *t = weft_spawn(delete_in_task, arg);

	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	return NULL;
}

Test(tls, a_deleted_keys_values_get_no_destructor_and_do_not_leak_into_the_next_key,
     .timeout = WT_TIMEOUT(10))
{
	struct del d;
	weft_tls_key keys[WEFT_TLS_KEYS - 1];

	memset(&d, 0, sizeof(d));
	/* All places but one taken: the new key must reuse the deleted
	 * one's place. */
	for (int i = 0; i < WEFT_TLS_KEYS - 1; i++)
		cr_assert_eq(weft_tls_key_create(&keys[i], NULL), 0);
	wt_run(delete_main, &d, 1);
	cr_assert_eq(d.fresh % WEFT_TLS_KEYS, d.old % WEFT_TLS_KEYS,
		     "the new key did not take the deleted one's place");
	cr_assert_eq(atomic_load(&deleted_dtor_runs), 0,
		     "a deleted key's destructor ran");
	cr_assert_eq(atomic_load(&kept_dtor_runs), 1);
}
