//go:build amd64

#include "textflag.h"

// func SiteID() (id int64, pc uintptr)
//
// pc is the return address of the function that calls SiteID, read through
// the caller's frame pointer as stack.ReturnPC does. id is g.goid read at
// the offset the start-up check located, or 0 if it has not (yet).
TEXT ·SiteID(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ	8(BP), AX
	MOVQ	AX, pc+8(FP)
	JMP	·GoID(SB) // writes id, the first result, as GoID's ret

// func getgp() unsafe.Pointer
TEXT ·getgp(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ	(TLS), AX
	MOVQ	AX, ret+0(FP)
	RET

// func GoID() int64
//
// g.goid at the located offset, or 0 while there is none.
TEXT ·GoID(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ	·goidOffset(SB), CX
	TESTQ	CX, CX
	JZ	unknown
	MOVQ	(TLS), AX
	MOVQ	(AX)(CX*1), AX
	MOVQ	AX, ret+0(FP)
	RET
unknown:
	MOVQ	$0, ret+0(FP)
	RET
