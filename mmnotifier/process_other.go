//go:build !linux

package mmnotifier

import (
	"fmt"
	"runtime"
)

// processSys is empty where there is no userfaultfd.
type processSys struct{}

func (p *Process) open(uint64) error {
	return fmt.Errorf("%w: userfaultfd is Linux-only and this is %s; use MM, the modelled address space",
		ErrNoUserfaultfd, runtime.GOOS)
}

func (p *Process) start()                      {}
func (p *Process) userModeOnly() bool          { return false }
func (p *Process) stats() Stats                { return Stats{} }
func (p *Process) sync()                       {}
func (p *Process) madvise(_, _ uint64) error   { return ErrNoUserfaultfd }
func (p *Process) munmap(_, _ uint64) error    { return ErrNoUserfaultfd }
func (p *Process) mmap(_, _ uint64) error      { return ErrNoUserfaultfd }
func (p *Process) mremap(_, _, _ uint64) error { return ErrNoUserfaultfd }
func (p *Process) rangeFault(*HMMRange) error  { return ErrNoUserfaultfd }
func (p *Process) close() error                { return ErrNoUserfaultfd }
