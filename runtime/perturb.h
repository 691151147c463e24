/*
 * Perturbation mode (the WEFT_PERTURB build option): every atomic operation
 * of the runtime first passes through weft__perturb_step(), which now and
 * then spins a random short while or yields the CPU. Windows between two
 * atomic steps of a protocol (park/wake, the run queues and stealing, the
 * inject queue, the idle protocol, the timer wheel and keeper, the wait
 * queues, select, the spinlocks) that are a few instructions wide in a
 * normal build are then hit in seconds of a stress run instead of hours.
 *
 * How: this header, included by base.h after <stdatomic.h>, redefines
 * the <stdatomic.h> operations the runtime uses with the same semantics
 * (GCC's __atomic builtins, as <stdatomic.h> has them) preceded by a
 * perturbation. atomic_init is left alone (no other thread can see the
 * object yet). Not for TSan builds (TSan perturbs its own way) and GCC's
 * <stdatomic.h> only.
 *
 * The delays cannot make weaker orderings appear (a store buffer is not a
 * delay): that is what the SPIN models in tests/model are for.
 * WEFT_PERTURB_SEED=n in the environment makes each thread's sequence of
 * delays start from n (mixed with the thread's order of arrival).
 */
#ifndef WEFT_PERTURB_H
#define WEFT_PERTURB_H

#ifdef WEFT__PERTURB

void weft__perturb_step(void);

#undef atomic_load_explicit
#define atomic_load_explicit(P, MO)                                        \
	__extension__({                                                    \
		__auto_type weft__pp = (P);                                \
		__typeof__((void)0, *weft__pp) weft__pv;                   \
		weft__perturb_step();                                      \
		__atomic_load(weft__pp, &weft__pv, (MO));                  \
		weft__pv;                                                  \
	})

#undef atomic_store_explicit
#define atomic_store_explicit(P, V, MO)                                    \
	__extension__({                                                    \
		__auto_type weft__pp = (P);                                \
		__typeof__((void)0, *weft__pp) weft__pv = (V);             \
		weft__perturb_step();                                      \
		__atomic_store(weft__pp, &weft__pv, (MO));                 \
	})

#undef atomic_exchange_explicit
#define atomic_exchange_explicit(P, V, MO)                                 \
	__extension__({                                                    \
		__auto_type weft__pp = (P);                                \
		__typeof__((void)0, *weft__pp) weft__pv = (V), weft__po;   \
		weft__perturb_step();                                      \
		__atomic_exchange(weft__pp, &weft__pv, &weft__po, (MO));   \
		weft__po;                                                  \
	})

#undef atomic_compare_exchange_strong_explicit
#define atomic_compare_exchange_strong_explicit(P, E, D, S, F)             \
	__extension__({                                                    \
		__auto_type weft__pp = (P);                                \
		__typeof__((void)0, *weft__pp) weft__pd = (D);             \
		weft__perturb_step();                                      \
		__atomic_compare_exchange(weft__pp, (E), &weft__pd, 0,     \
					  (S), (F));                       \
	})

#undef atomic_compare_exchange_weak_explicit
#define atomic_compare_exchange_weak_explicit(P, E, D, S, F)               \
	__extension__({                                                    \
		__auto_type weft__pp = (P);                                \
		__typeof__((void)0, *weft__pp) weft__pd = (D);             \
		weft__perturb_step();                                      \
		__atomic_compare_exchange(weft__pp, (E), &weft__pd, 1,     \
					  (S), (F));                       \
	})

#undef atomic_fetch_add_explicit
#define atomic_fetch_add_explicit(P, V, MO)                                \
	(weft__perturb_step(), __atomic_fetch_add((P), (V), (MO)))
#undef atomic_fetch_sub_explicit
#define atomic_fetch_sub_explicit(P, V, MO)                                \
	(weft__perturb_step(), __atomic_fetch_sub((P), (V), (MO)))
#undef atomic_fetch_or_explicit
#define atomic_fetch_or_explicit(P, V, MO)                                 \
	(weft__perturb_step(), __atomic_fetch_or((P), (V), (MO)))
#undef atomic_fetch_and_explicit
#define atomic_fetch_and_explicit(P, V, MO)                                \
	(weft__perturb_step(), __atomic_fetch_and((P), (V), (MO)))
#undef atomic_thread_fence
#define atomic_thread_fence(MO)                                            \
	(weft__perturb_step(), __atomic_thread_fence(MO))

#endif /* WEFT__PERTURB */
#endif /* WEFT_PERTURB_H */
