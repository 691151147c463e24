/*
 * Futex waits for threads outside any runtime (futex.c).
 */
#ifndef WEFT_FUTEX_H
#define WEFT_FUTEX_H

#include "base.h"

/* ---- futex --------------------------------------------------------------
 * For threads outside any runtime that wait on runtime objects (weft_join,
 * sync objects): they block in the kernel on a 32-bit word. A wake may come
 * after the waiter has left and its word's memory was reused; a spurious
 * wake-up is all that does, and every waiter loops on its condition. */
void weft__futex_wait(atomic_int *word, int expected, uint64_t deadline);
void weft__futex_wake(atomic_int *word, int n);

#endif /* WEFT_FUTEX_H */
