package mmnotifier

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The userfaultfd ABI (include/uapi/linux/userfaultfd.h). The ioctl numbers
// are the same on every architecture Go supports.
const (
	uffdAPI          = 0xAA
	uffdUserModeOnly = 1 // UFFD_USER_MODE_ONLY

	uffdFeatureEventRemap  = 1 << 2 // UFFD_FEATURE_EVENT_REMAP
	uffdFeatureEventRemove = 1 << 3 // UFFD_FEATURE_EVENT_REMOVE
	uffdFeatureEventUnmap  = 1 << 6 // UFFD_FEATURE_EVENT_UNMAP

	uffdioAPI          = 0xc018aa3f // _IOWR(UFFDIO, _UFFDIO_API, struct uffdio_api)
	uffdioRegister     = 0xc020aa00 // _IOWR(UFFDIO, _UFFDIO_REGISTER, struct uffdio_register)
	uffdioWake         = 0x8010aa02 // _IOR(UFFDIO, _UFFDIO_WAKE, struct uffdio_range)
	uffdioCopy         = 0xc028aa03 // _IOWR(UFFDIO, _UFFDIO_COPY, struct uffdio_copy)
	uffdioZeropage     = 0xc020aa04 // _IOWR(UFFDIO, _UFFDIO_ZEROPAGE, struct uffdio_zeropage)
	userfaultfdIocNew  = 0xaa00     // _IO(USERFAULTFD_IOC, 0x00), on /dev/userfaultfd
	uffdRegisterMissng = 1          // UFFDIO_REGISTER_MODE_MISSING

	// Bits of uffdio_register.ioctls: the resolving ioctls the range allows.
	uffdioCopyBit     = 1 << 3 // 1 << _UFFDIO_COPY
	uffdioZeropageBit = 1 << 4 // 1 << _UFFDIO_ZEROPAGE

	uffdEventPagefault = 0x12
	uffdEventRemap     = 0x14
	uffdEventRemove    = 0x15
	uffdEventUnmap     = 0x16

	uffdPagefaultFlagWrite = 1 << 0 // UFFD_PAGEFAULT_FLAG_WRITE
)

type uffdioAPIArg struct{ api, features, ioctls uint64 }

type uffdioRange struct{ start, len uint64 }

type uffdioRegisterArg struct {
	rng          uffdioRange
	mode, ioctls uint64
}

type uffdioCopyArg struct {
	dst, src, len, mode uint64
	copied              int64
}

type uffdioZeropageArg struct {
	rng      uffdioRange
	mode     uint64
	zeropage int64
}

// uffdMsg is struct uffd_msg: an event byte, padding, and a 24-byte union
// read here as three words: pagefault {flags, address, ptid}, remap {from,
// to, len}, remove and unmap {start, end}.
type uffdMsg struct {
	event   uint8
	_       [7]byte
	a, b, c uint64
}

const uffdMsgSize = int(unsafe.Sizeof(uffdMsg{}))

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// openUserfaultfd makes a userfaultfd with the non-cooperative events, as
// userfaultfd(2) describes: the syscall first, then the syscall with
// UFFD_USER_MODE_ONLY (allowed even with vm.unprivileged_userfaultfd=0),
// then /dev/userfaultfd (whose file mode is the permission check). Its
// error says why none worked and what to do.
func openUserfaultfd() (fd int, userModeOnly bool, err error) {
	const flags = unix.O_CLOEXEC // blocking: the monitor sleeps in read(2)
	fd = -1
	r, _, e1 := unix.Syscall(unix.SYS_USERFAULTFD, flags, 0, 0)
	if e1 == 0 {
		fd = int(r)
	} else if e1 == unix.EPERM {
		if r, _, e := unix.Syscall(unix.SYS_USERFAULTFD, flags|uffdUserModeOnly, 0, 0); e == 0 {
			fd, userModeOnly = int(r), true
		}
	}
	var e2 error
	if fd < 0 {
		if fd, e2 = openDevUserfaultfd(flags); e2 != nil {
			return -1, false, unavailable(e1, e2)
		}
	}
	api := uffdioAPIArg{api: uffdAPI, features: uffdFeatureEventRemove | uffdFeatureEventUnmap | uffdFeatureEventRemap}
	if err := ioctl(fd, uffdioAPI, unsafe.Pointer(&api)); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("%w: UFFDIO_API with EVENT_REMOVE|EVENT_UNMAP|EVENT_REMAP: %v (the kernel is older than 4.11)",
			ErrNoUserfaultfd, err)
	}
	return fd, userModeOnly, nil
}

func openDevUserfaultfd(flags int) (int, error) {
	dev, err := unix.Open("/dev/userfaultfd", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dev)
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(dev), userfaultfdIocNew, uintptr(flags))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// unavailable explains why neither userfaultfd(2) (e1) nor /dev/userfaultfd
// (e2) gave a descriptor.
func unavailable(e1 unix.Errno, e2 error) error {
	var why string
	switch e1 {
	case unix.ENOSYS:
		why = "userfaultfd(2): ENOSYS: the kernel lacks CONFIG_USERFAULTFD, or a sandbox (seccomp, gVisor) " +
			"refuses the syscall; run outside the sandbox or allow userfaultfd in its profile"
	case unix.EPERM:
		why = "userfaultfd(2): EPERM: vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE (or a seccomp profile refuses it); " +
			"run with CAP_SYS_PTRACE, or sysctl vm.unprivileged_userfaultfd=1"
	default:
		why = "userfaultfd(2): " + e1.Error()
	}
	dev := "/dev/userfaultfd: " + e2.Error()
	if errors.Is(e2, unix.ENOENT) {
		dev += " (Linux 6.1 and later have it; older kernels only the syscall)"
	} else if errors.Is(e2, unix.EACCES) || errors.Is(e2, unix.EPERM) {
		dev += " (give this user read-write access to it, e.g. a udev rule or ACL)"
	}
	return fmt.Errorf("%w: %s; %s", ErrNoUserfaultfd, why, dev)
}

// uffdRegister registers [start, start+length) in MISSING mode and checks
// that faults there can be resolved by copy and by zero page.
func uffdRegister(fd int, start, length uint64) error {
	reg := uffdioRegisterArg{rng: uffdioRange{start, length}, mode: uffdRegisterMissng}
	if err := ioctl(fd, uffdioRegister, unsafe.Pointer(&reg)); err != nil {
		return fmt.Errorf("mmnotifier: UFFDIO_REGISTER [%#x-%#x): %w", start, start+length, err)
	}
	if reg.ioctls&(uffdioCopyBit|uffdioZeropageBit) != uffdioCopyBit|uffdioZeropageBit {
		return fmt.Errorf("mmnotifier: UFFDIO_REGISTER [%#x-%#x): no UFFDIO_COPY/ZEROPAGE (ioctls %#x)", start, start+length, reg.ioctls)
	}
	return nil
}

// uffdCopy maps a copy of src at dst (UFFDIO_COPY) and wakes its waiters.
func uffdCopy(fd int, dst uint64, src []byte) error {
	c := uffdioCopyArg{dst: dst, src: uint64(uintptr(unsafe.Pointer(&src[0]))), len: uint64(len(src))}
	return ioctl(fd, uffdioCopy, unsafe.Pointer(&c))
}

// zeroRun is the source of uffdCopyZero: zeroes, never written.
var zeroRun [faultWindow * PageSize]byte

// uffdCopyZero maps zeroed copies at [dst, dst+length) (UFFDIO_COPY from
// zeroRun; length at most its size) and wakes their waiters. It returns
// the bytes mapped: on a page already there, or an event queued, it stops
// and fails with EAGAIN, or with that page's error if it mapped none.
func uffdCopyZero(fd int, dst, length uint64) (int64, error) {
	c := uffdioCopyArg{dst: dst, src: uint64(uintptr(unsafe.Pointer(&zeroRun[0]))), len: length}
	err := ioctl(fd, uffdioCopy, unsafe.Pointer(&c))
	return c.copied, err
}

// uffdZeropageN maps the zero page at [dst, dst+length) (UFFDIO_ZEROPAGE)
// and wakes their waiters; it returns the bytes mapped, failing as
// uffdCopyZero does.
func uffdZeropageN(fd int, dst, length uint64) (int64, error) {
	z := uffdioZeropageArg{rng: uffdioRange{dst, length}}
	err := ioctl(fd, uffdioZeropage, unsafe.Pointer(&z))
	return z.zeropage, err
}

// uffdZeropage maps the zero page at dst (UFFDIO_ZEROPAGE) and wakes its
// waiters.
func uffdZeropage(fd int, dst, length uint64) error {
	z := uffdioZeropageArg{rng: uffdioRange{dst, length}}
	return ioctl(fd, uffdioZeropage, unsafe.Pointer(&z))
}

// uffdWake wakes the threads waiting on faults in [start, start+length)
// (UFFDIO_WAKE): needed when a resolving ioctl found the page already
// there (EEXIST), which wakes nobody.
func uffdWake(fd int, start, length uint64) error {
	w := uffdioRange{start, length}
	return ioctl(fd, uffdioWake, unsafe.Pointer(&w))
}
