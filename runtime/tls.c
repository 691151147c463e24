/*
 * Task-local storage. Keys are process-wide: WEFT_TLS_KEYS slots, each
 * with a state word (a generation, and whether a key holds it) and a
 * destructor. A key is its slot plus WEFT_TLS_KEYS times the slot's
 * generation, so a deleted key stays invalid when its slot is taken again
 * (the new key has the next generation), and get, set and delete check a
 * key the same way: its slot's state must say "in use by this
 * generation". Values live in a per-task array of (value, key) pairs,
 * allocated on the first weft_tls_set() and freed with the control block;
 * a value stored under a key that has since been deleted is never seen
 * through the slot's next key (the key stored with it differs).
 *
 * Orderings. Create and delete are rare and serialised by a mutex. Create
 * stores the destructor, then the state (release); a reader that loads
 * the state (acquire) and finds the key in use sees that destructor. Only
 * the owning task reads or writes its array.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>

#include "mem.h"
#include "task.h"
#include "tls.h"
#include "worker.h"

#define SLOT(key) ((key) % WEFT_TLS_KEYS)
#define GEN(key) ((key) / WEFT_TLS_KEYS)
/* state: generation << 1 | in use */
#define IN_USE(gen) (((gen) << 1) | 1u)

static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint state[WEFT_TLS_KEYS];
static _Atomic(void (*)(void *)) destructors[WEFT_TLS_KEYS];

/* Whether key is live: created and not deleted. */
static bool key_live(weft_tls_key key)
{
	return atomic_load_explicit(&state[SLOT(key)],
				    memory_order_acquire) == IN_USE(GEN(key));
}

int weft_tls_key_create(weft_tls_key *key, void (*destructor)(void *))
{
	unsigned k, s, gen;

	if (!key)
		return -EINVAL;
	pthread_mutex_lock(&keys_lock);
	for (k = 0; k < WEFT_TLS_KEYS; k++) {
		s = atomic_load_explicit(&state[k], memory_order_relaxed);
		if (!(s & 1))
			break;
	}
	if (k == WEFT_TLS_KEYS) {
		pthread_mutex_unlock(&keys_lock);
		return -EAGAIN;
	}
	gen = s >> 1;
	/* After 2^26 deletes of one slot the key would not fit in an
	 * unsigned: the slot starts over (a key that old is long gone). */
	if (gen > (UINT_MAX - k) / WEFT_TLS_KEYS)
		gen = 0;
	atomic_store_explicit(&destructors[k], destructor,
			      memory_order_relaxed);
	/* Release: the destructor is visible to whoever sees the key live. */
	atomic_store_explicit(&state[k], IN_USE(gen), memory_order_release);
	pthread_mutex_unlock(&keys_lock);
	*key = k + gen * WEFT_TLS_KEYS;
	return 0;
}

int weft_tls_key_delete(weft_tls_key key)
{
	int err = 0;

	pthread_mutex_lock(&keys_lock);
	if (key_live(key))
		atomic_store_explicit(&state[SLOT(key)],
				      (GEN(key) + 1) << 1,
				      memory_order_release);
	else
		err = -EINVAL;
	pthread_mutex_unlock(&keys_lock);
	return err;
}

int weft_tls_set(weft_tls_key key, void *value)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tcb *t;

	if (!key_live(key))
		return -EINVAL;
	if (!w || !w->current)
		return -EPERM;
	t = w->current;
	if (!t->tls) {
		if (!value)
			return 0;
		t->tls = weft__mem_calloc(WEFT_TLS_KEYS, sizeof(*t->tls));
		if (!t->tls)
			return -ENOMEM;
	}
	t->tls[SLOT(key)].value = value;
	t->tls[SLOT(key)].key = key;
	return 0;
}

void *weft_tls_get(weft_tls_key key)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tls_slot *e;

	if (!w || !w->current || !w->current->tls || !key_live(key))
		return NULL;
	e = &w->current->tls[SLOT(key)];
	return e->key == key ? e->value : NULL;
}

/* Runs in the ending task. A destructor may set values again; like POSIX
 * threads, repeat a few rounds, then give up on them. Values of keys
 * deleted since are dropped without their destructor (pthread_key_delete's
 * rule). */
void weft__tls_run_destructors(struct weft__tcb *t)
{
	int round, again = 1;
	unsigned k;

	for (round = 0; round < 4 && again; round++) {
		again = 0;
		for (k = 0; k < WEFT_TLS_KEYS; k++) {
			struct weft__tls_slot *e = &t->tls[k];
			void *v = e->value;
			void (*d)(void *);

			if (!v)
				continue;
			e->value = NULL;
			if (!key_live(e->key))
				continue;
			d = atomic_load_explicit(&destructors[k],
						 memory_order_relaxed);
			if (d) {
				d(v);
				again = 1;
			}
		}
	}
}
