/*
 * Context switch for AArch64 (AAPCS64).
 *
 * void *weft__ctx_switch(void **save_sp, void *load_sp, void *arg);
 *
 * Saves the callee-saved state on the caller's stack: x19-x28, the frame
 * pointer x29, the link register x30, the low halves d8-d15 of v8-v15 (the
 * only callee-saved SIMD state) and the floating-point control register
 * FPCR. Stores sp in *save_sp, loads load_sp, restores the same set and
 * returns `arg` (in x0) through the restored x30. FPCR is written only
 * when it differs: a write to it is expensive, serialising on some cores,
 * and most switches go between contexts in the same mode.
 *
 * Saved frame (176 bytes), from load_sp upwards:
 *   [0]   x19 x20  [16] x21 x22  [32] x23 x24  [48] x25 x26
 *   [64]  x27 x28  [80] x29 x30  [96] d8 d9 ... [144] d14 d15
 *   [160] fpcr     [168] pad
 *
 * weft__ctx_make() writes a frame whose x30 is weft__ctx_entry, x19 the
 * entry function and x20 its context pointer.
 */
	.text
	.globl	weft__ctx_switch
	.hidden	weft__ctx_switch
	.type	weft__ctx_switch, %function
	.p2align 4
weft__ctx_switch:
	sub	sp, sp, #176
	stp	x19, x20, [sp, #0]
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]
	stp	d8, d9, [sp, #96]
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	mrs	x9, fpcr		/* kept in x9 for the compare below */
	str	x9, [sp, #160]
	mov	x10, sp
	str	x10, [x0]
	mov	sp, x1
	ldp	x19, x20, [sp, #0]
	ldp	x21, x22, [sp, #16]
	ldp	x23, x24, [sp, #32]
	ldp	x25, x26, [sp, #48]
	ldp	x27, x28, [sp, #64]
	ldp	x29, x30, [sp, #80]
	ldp	d8, d9, [sp, #96]
	ldp	d10, d11, [sp, #112]
	ldp	d12, d13, [sp, #128]
	ldp	d14, d15, [sp, #144]
	/* FPCR holds control bits only (the sticky flags live in FPSR),
	 * so the whole register is compared. */
	ldr	x10, [sp, #160]
	cmp	x9, x10
	b.eq	1f
	msr	fpcr, x10
1:	add	sp, sp, #176
	mov	x0, x2
	ret
	.size	weft__ctx_switch, .-weft__ctx_switch

/*
 * First instructions of a new context: x0 holds the switch's arg, x19 the
 * entry function, x20 its context pointer. Calls entry(arg, ctx), which
 * never returns. x29 = 0 and x30 = 0 end frame-pointer unwinding.
 */
	.globl	weft__ctx_entry
	.hidden	weft__ctx_entry
	.type	weft__ctx_entry, %function
	.p2align 4
weft__ctx_entry:
	mov	x29, #0
	mov	x30, #0
	mov	x1, x20
	blr	x19
	brk	#0
	.size	weft__ctx_entry, .-weft__ctx_entry

	.section .note.GNU-stack,"",%progbits
