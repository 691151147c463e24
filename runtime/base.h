/*
 * What every file of the runtime shares: the public header, the atomics
 * (through perturb.h in the perturbation build), sanitizer switches,
 * assertions, live-object tags and the errno rule. Never installed.
 *
 * What each file owns, and which way calls go: docs/design/layers.md.
 */
#ifndef WEFT_BASE_H
#define WEFT_BASE_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "perturb.h"

#define WEFT__CACHELINE 64
#define WEFT__ALIGNED __attribute__((aligned(WEFT__CACHELINE)))
#define weft__likely(x) __builtin_expect(!!(x), 1)
#define weft__unlikely(x) __builtin_expect(!!(x), 0)
/* The record of type `type` whose member `member` p points to. */
#define weft__container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* ---- sanitizers ------------------------------------------------------ */

#if defined(__SANITIZE_ADDRESS__)
#define WEFT__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT__ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT__TSAN 1
#endif
#endif

/* ---- assertions -------------------------------------------------------
 * Two kinds, kept apart (Lua's lua_assert vs api_check):
 *   weft__assert: internal invariants, compiled in debug and sanitizer
 *                 builds only;
 *   weft__check:  API misuse by the caller, which aborts with file:line in
 *                 every build, because carrying on would corrupt the runtime.
 */
void weft__base_die(const char *file, int line, const char *msg)
	__attribute__((noreturn, cold));
#if !defined(NDEBUG) || defined(WEFT__ASAN) || defined(WEFT__TSAN)
#define weft__assert(c) \
	((c) ? (void)0 : weft__base_die(__FILE__, __LINE__, "assertion failed: " #c))
#else
#define weft__assert(c) ((void)0)
#endif
#define weft__check(c, msg) \
	((c) ? (void)0 : weft__base_die(__FILE__, __LINE__, msg))

/* ---- live-object tags ----------------------------------------------------
 * Coordination objects (sync.c, chan.c, group.c) carry a tag set by their
 * create and cleared by their destroy, so that a second destroy (or one of
 * something that is no such object) aborts with a message instead of
 * freeing twice or spinning on a lock byte the allocator has reused. The
 * tag sits past an object's first 16 bytes, which glibc's free lists
 * overwrite. A detectable misuse only: memory reused by another object
 * since is not told apart. */
#define WEFT__LIVE 0x6c697665u /* "live" */
#define WEFT__DEAD 0x64656164u /* "dead" */
#define weft__live_end(tag, msg)                                           \
	do {                                                               \
		weft__check(*(tag) == WEFT__LIVE, msg);                    \
		*(tag) = WEFT__DEAD;                                       \
	} while (0)

/* ---- errno -------------------------------------------------------------
 * weft.h: I/O calls "never set errno". A public call that makes system
 * calls directly declares WEFT__KEEP_ERRNO first: errno is put back as it
 * was when the call returns (after its return value, which may read errno,
 * is computed). Inside a call that may suspend, the put-back may happen on
 * another thread; that thread's errno means nothing there at that moment
 * (weft.h: never read errno after a call that may suspend). */
static inline void weft__base_errno_restore(const int *saved)
{
	errno = *saved;
}
#define WEFT__KEEP_ERRNO                                                   \
	int weft__errno_saved_ __attribute__((cleanup(weft__base_errno_restore))) = \
		errno

/* The WEFT_EAI_* code (weft.h) for getaddrinfo()'s failure eai, or 0 if
 * it has none (base.c holds the one table of the pairs). */
int weft__base_eai_err(int eai);

/* Reads /proc/self/task/TID/NAME (a thread of this process: no ptrace
 * permission is needed) into buf, NUL-terminated; returns the length, or
 * -1 if it cannot be read. For the watchdog (stall.c: which call a
 * worker is blocked in) and the kick (ring.c: whether it is running). */
long weft__base_thread_file(int tid, const char *name, char *buf,
			    unsigned long size);

#endif /* WEFT_BASE_H */
