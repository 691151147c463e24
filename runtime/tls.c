/*
 * Task-local storage. Keys are process-wide (an atomic counter hands them
 * out, destructors recorded per key); values live in a per-task array
 * allocated on the first weft_tls_set() and freed with the control block.
 * Only the owning task reads or writes its array, so no synchronisation is
 * needed beyond the key table, whose entries are written once before the
 * key is returned (release) and read after (acquire).
 */
#include <errno.h>

#include "internal.h"

static atomic_uint next_key;
static _Atomic(void (*)(void *)) destructors[WEFT_TLS_KEYS];

int weft_tls_key_create(weft_tls_key *key, void (*destructor)(void *))
{
	unsigned k = atomic_load_explicit(&next_key, memory_order_relaxed);

	if (!key)
		return -EINVAL;
	do {
		if (k >= WEFT_TLS_KEYS)
			return -EAGAIN;
	} while (!atomic_compare_exchange_weak_explicit(
		&next_key, &k, k + 1, memory_order_relaxed,
		memory_order_relaxed));
	atomic_store_explicit(&destructors[k], destructor,
			      memory_order_release);
	*key = k;
	return 0;
}

int weft_tls_set(weft_tls_key key, void *value)
{
	struct weft__worker *w = weft__worker_self();
	struct weft_task *t;

	if (key >= atomic_load_explicit(&next_key, memory_order_acquire))
		return -EINVAL;
	if (!w || !w->current)
		return -EPERM;
	t = w->current;
	if (!t->tls) {
		if (!value)
			return 0;
		t->tls = weft__calloc(WEFT_TLS_KEYS, sizeof(void *));
		if (!t->tls)
			return -ENOMEM;
	}
	t->tls[key] = value;
	return 0;
}

void *weft_tls_get(weft_tls_key key)
{
	struct weft__worker *w = weft__worker_self();

	if (key >= WEFT_TLS_KEYS || !w || !w->current || !w->current->tls)
		return NULL;
	return w->current->tls[key];
}

/* Runs in the ending task. A destructor may set values again; like POSIX
 * threads, repeat a few rounds, then give up on them. */
void weft__tls_run_destructors(struct weft_task *t)
{
	int round, again = 1;
	unsigned k;

	for (round = 0; round < 4 && again; round++) {
		again = 0;
		for (k = 0; k < WEFT_TLS_KEYS; k++) {
			void *v = t->tls[k];
			void (*d)(void *);

			if (!v)
				continue;
			t->tls[k] = NULL;
			d = atomic_load_explicit(&destructors[k],
						 memory_order_acquire);
			if (d) {
				d(v);
				again = 1;
			}
		}
	}
}
