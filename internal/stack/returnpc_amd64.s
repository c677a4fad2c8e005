#include "textflag.h"

// func ReturnPC() uintptr
//
// With frame pointers (always on for amd64), the caller's BP points at its
// saved BP, and the word above it is the caller's own return address.
TEXT ·ReturnPC(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ	8(BP), AX
	MOVQ	AX, ret+0(FP)
	RET

// func OuterReturnPC() uintptr
//
// One frame further: the caller's BP points at its caller's saved BP, and
// the word above that is the caller's caller's return address.
TEXT ·OuterReturnPC(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ	0(BP), AX
	MOVQ	8(AX), AX
	MOVQ	AX, ret+0(FP)
	RET
