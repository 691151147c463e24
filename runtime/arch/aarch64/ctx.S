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
 * weft__ctx_make() writes a frame whose x30 is just inside weft__ctx_entry,
 * x19 the entry function and x20 its context pointer.
 *
 * Return-address signing (PAC). The saved x30 is signed (PACIASP: key A,
 * modifier the sp at the call) before it is stored, and authenticated
 * (AUTIASP) after the resumed context's frame is popped, when sp is again
 * the value it had when that context called the switch: each context's
 * x30 is checked against its own sp. weft__ctx_make signs a new
 * context's x30 the same way (ctx.h weft__ctx_sign_ra). So a
 * return address overwritten in a suspended task's stack faults instead
 * of being followed. Without PAC hardware all three are nops.
 *
 * Branch target identification (BTI). PACIASP is an implicit `bti c`
 * landing pad, so weft__ctx_switch may be called through a register (a
 * linker veneer's BR x16 included). A new context is entered by RET,
 * which BTI does not check, so its resume point needs no landing pad; its
 * `blr x19` goes to weft__task_entry, C code with its own landing pad
 * (-mbranch-protection). The note at the end claims BTI and PAC, not GCS
 * (bit 2, Arm's shadow stack): a switch of stacks by RET breaks it as it
 * breaks x86's SHSTK (see runtime/arch/x86_64/ctx.S). tests/run's
 * cross check runs the switch with BTI and PAC enforced under qemu.
 *
 * Unwinding. The CFI describes, at every instruction, where the caller's
 * registers are. Up to `mov sp, x1` that is the context switching out;
 * from there on sp points at the resumed context's frame, whose layout is
 * the same, so the same rules (CFA = sp + 176, each register at its slot)
 * describe the resumed context, and a backtrace shows the stack coming
 * in, down to its own switch call or, for a new context, to
 * weft__ctx_entry. .cfi_negate_ra_state follows the signing state of x30
 * so that unwinders strip the signature. tests/gdb_unwind.sh checks a
 * backtrace at every instruction.
 */
#include "../ctx.h"

	.text
	.globl	weft__ctx_switch
	.hidden	weft__ctx_switch
	.type	weft__ctx_switch, %function
	.p2align 4
weft__ctx_switch:
	.cfi_startproc
	hint	#25			/* paciasp */
	.cfi_negate_ra_state
	sub	sp, sp, #176
	.cfi_def_cfa_offset 176
	stp	x19, x20, [sp, #0]
	.cfi_rel_offset x19, 0
	.cfi_rel_offset x20, 8
	stp	x21, x22, [sp, #16]
	.cfi_rel_offset x21, 16
	.cfi_rel_offset x22, 24
	stp	x23, x24, [sp, #32]
	.cfi_rel_offset x23, 32
	.cfi_rel_offset x24, 40
	stp	x25, x26, [sp, #48]
	.cfi_rel_offset x25, 48
	.cfi_rel_offset x26, 56
	stp	x27, x28, [sp, #64]
	.cfi_rel_offset x27, 64
	.cfi_rel_offset x28, 72
	stp	x29, x30, [sp, #80]
	.cfi_rel_offset x29, 80
	.cfi_rel_offset x30, 88
	stp	d8, d9, [sp, #96]
	.cfi_rel_offset d8, 96
	.cfi_rel_offset d9, 104
	stp	d10, d11, [sp, #112]
	.cfi_rel_offset d10, 112
	.cfi_rel_offset d11, 120
	stp	d12, d13, [sp, #128]
	.cfi_rel_offset d12, 128
	.cfi_rel_offset d13, 136
	stp	d14, d15, [sp, #144]
	.cfi_rel_offset d14, 144
	.cfi_rel_offset d15, 152
	mrs	x9, fpcr		/* kept in x9 for the compare below */
	str	x9, [sp, #160]
	mov	x10, sp
	str	x10, [x0]
	mov	sp, x1
	/* The CFI is unchanged, and now describes the resumed context's
	 * frame (see the top of this file). */
	ldp	x19, x20, [sp, #0]
	.cfi_restore x19
	.cfi_restore x20
	ldp	x21, x22, [sp, #16]
	.cfi_restore x21
	.cfi_restore x22
	ldp	x23, x24, [sp, #32]
	.cfi_restore x23
	.cfi_restore x24
	ldp	x25, x26, [sp, #48]
	.cfi_restore x25
	.cfi_restore x26
	ldp	x27, x28, [sp, #64]
	.cfi_restore x27
	.cfi_restore x28
	ldp	x29, x30, [sp, #80]
	.cfi_restore x29
	.cfi_restore x30
	ldp	d8, d9, [sp, #96]
	.cfi_restore d8
	.cfi_restore d9
	ldp	d10, d11, [sp, #112]
	.cfi_restore d10
	.cfi_restore d11
	ldp	d12, d13, [sp, #128]
	.cfi_restore d12
	.cfi_restore d13
	ldp	d14, d15, [sp, #144]
	.cfi_restore d14
	.cfi_restore d15
	/* FPCR holds control bits only (the sticky flags live in FPSR),
	 * so the whole register is compared. */
	ldr	x10, [sp, #160]
	cmp	x9, x10
	b.eq	1f
	msr	fpcr, x10
1:	add	sp, sp, #176
	.cfi_def_cfa_offset 0
	hint	#29			/* autiasp */
	.cfi_negate_ra_state
	mov	x0, x2
	ret
	.cfi_endproc
	.size	weft__ctx_switch, .-weft__ctx_switch

/*
 * First instructions of a new context, reached by the RET above at
 * .Lctx_start with x0 = the switch's arg, x19 = the entry function, x20 =
 * its context pointer. Calls entry(arg, ctx), which never returns.
 *
 * Unwinding ends here: the return-address column (x30) is undefined in
 * this whole function, the unwinders' mark of the outermost frame, and
 * x29 = x30 = 0 also end frame-pointer chains.
 *
 * Why the nop: an unwinder looks a caller's return address up at address
 * - 1 (inside the call, for a normal return address). A new context's
 * return address is .Lctx_start, so that lookup lands in the instruction
 * before it; without the nop that would be outside this function (in
 * the padding after weft__ctx_switch), in no FDE and no symbol, and a
 * backtrace taken in weft__ctx_switch after the stack switch would go
 * astray. weft__ctx_make adds WEFT__CTX_ENTRY_SKIP (ctx.h) to this
 * function's address; the check at the end keeps the two in step. The
 * nop is no landing pad: weft__ctx_entry is never called, and under BTI a
 * call to it faults.
 */
	.globl	weft__ctx_entry
	.hidden	weft__ctx_entry
	.type	weft__ctx_entry, %function
	.p2align 4
weft__ctx_entry:
	.cfi_startproc
	.cfi_undefined x30
	nop
.Lctx_start:
	mov	x29, #0
	mov	x30, #0
	mov	x1, x20
	blr	x19
	brk	#0
	.cfi_endproc
	.size	weft__ctx_entry, .-weft__ctx_entry
	.if	.Lctx_start - weft__ctx_entry - WEFT__CTX_ENTRY_SKIP
	.error	"weft__ctx_entry: resume point and WEFT__CTX_ENTRY_SKIP disagree"
	.endif

/* NT_GNU_PROPERTY_TYPE_0 note: GNU_PROPERTY_AARCH64_FEATURE_1_AND with BTI
 * (bit 0) and PAC (bit 1). */
	.section .note.gnu.property, "a"
	.p2align 3
	.long	4		/* name size: "GNU\0" */
	.long	16		/* descriptor size */
	.long	5		/* NT_GNU_PROPERTY_TYPE_0 */
	.asciz	"GNU"
	.long	0xc0000000	/* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
	.long	4		/* property data size */
	.long	0x3		/* BTI | PAC */
	.long	0		/* pad to 8 bytes */

	.section .note.GNU-stack,"",%progbits
