/*
 * The allocation hook (mem.c).
 */
#ifndef WEFT_MEM_H
#define WEFT_MEM_H

#include <stddef.h>

/* ---- allocation --------------------------------------------------------
 * All heap memory of the runtime goes through these (Lua's lua_Alloc): one
 * place to count, to fail on purpose in tests, or to swap allocators. */
void *weft__mem_alloc(size_t size);
void *weft__mem_calloc(size_t n, size_t size);
void *weft__mem_aligned(size_t align, size_t size);
/* Tests: fail allocations on demand (misc.c); declared again in
 * tests/weft_test.h, which cannot include this header. */
void weft__mem_debug_fail(long skip, long n);
unsigned long weft__mem_debug_fail_hits(void);
void weft__mem_free(void *p);

#endif /* WEFT_MEM_H */
