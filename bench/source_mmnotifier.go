package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mmnotifier"
)

// The invalidation source of the strategy report: real address spaces of
// the mmnotifier package, with the driver's notifier registered on them.
// Blockable invalidations come from mprotect and munmap (Protect, Unmap) by
// several goroutines; non-blockable ones from the OOM reaper (OOMReap)
// tearing down fresh victims.

// newSource makes the invalidation source of a run.
func newSource() source { return new(mmSource) }

// sourceName says where invalidations come from, for the report.
const sourceName = "mmnotifier: Protect and Unmap on shared address spaces, OOMReap of victims"

// protectRegions is how many mappings of each address space the goroutines
// sharing it toggle between read-write and read-only.
const protectRegions = 8

// victimMappings is how many mappings each OOM victim has: the reaper
// invalidates each, non-blockably.
const victimMappings = 4

type mmSource struct {
	dev     *device
	spaces  []*space
	victims atomic.Int64
}

// space is an address space the blockable goroutines share.
type space struct {
	mm      *mmnotifier.MM
	sub     *mmnotifier.Subscription
	mirror  *mirror
	slots   int      // goroutines sharing it
	regions []region // slot s toggles regions s, s+slots, ...
}

// region is a mapping whose first page is present, so that changing its
// protection invalidates it (change_protection skips empty page tables).
type region struct {
	addr, length uint64
	readOnly     bool
}

// notifier is the driver's MMU notifier: the mirror's invalidate as
// invalidate_range_start. It has no end callback, since its start may fail
// in a non-blockable range.
type notifier struct{ m *mirror }

func (n *notifier) InvalidateRangeStart(r *mmnotifier.Range) error {
	md := blockable
	if !r.Blockable() {
		md = nonBlockable
	}
	return n.m.invalidate(r.Start, r.End, md)
}

func (s *mmSource) setup(dev *device, spaces, workers int, rng *rand.Rand) error {
	s.dev = dev
	slots := (workers + spaces - 1) / spaces
	for i := range spaces {
		sp, err := newSpace(dev, int64(1000+i), slots, rng)
		if err != nil {
			return err
		}
		s.spaces = append(s.spaces, sp)
	}
	return nil
}

// newSpace maps the protect regions, separated by PROT_NONE guards so that
// they never merge, touches their first pages and registers the driver.
func newSpace(dev *device, pid int64, slots int, rng *rand.Rand) (*space, error) {
	mm := mmnotifier.NewMM(mmnotifier.WithZone(dev.zone), mmnotifier.WithoutReclaim(),
		mmnotifier.WithTask(pid, "app"))
	sp := &space{mm: mm, slots: slots}
	for range max(protectRegions, slots) {
		length := uint64(rangePages(rng)) * gfp.PageSize
		addr, err := mm.Mmap(length, mmnotifier.ProtReadWrite)
		if err != nil {
			mm.Exit()
			return nil, err
		}
		if _, err := mm.Mmap(gfp.PageSize, mmnotifier.ProtNone); err != nil {
			mm.Exit()
			return nil, err
		}
		if _, err := mm.Fault(addr, true); err != nil {
			mm.Exit()
			return nil, err
		}
		sp.regions = append(sp.regions, region{addr: addr, length: length})
	}
	m, err := dev.newMirror()
	if err != nil {
		mm.Exit()
		return nil, err
	}
	sub, err := mmnotifier.Register(mm, &notifier{m})
	if err != nil {
		m.release()
		mm.Exit()
		return nil, err
	}
	sp.mirror, sp.sub = m, sub
	return sp, nil
}

// blockable makes one change to the worker's address space: half the time
// it flips the protection of one of its regions (PROTECTION_VMA), else it
// maps a range and unmaps it (UNMAP). Then the application takes its next
// step on the device, if the strategy gives it one.
func (s *mmSource) blockable(worker int, rng *rand.Rand) error {
	sp := s.spaces[worker%len(s.spaces)]
	err := s.change(sp, worker, rng)
	s.dev.afterChange(sp.mirror)
	return err
}

func (s *mmSource) change(sp *space, worker int, rng *rand.Rand) error {
	slot := worker / len(s.spaces) % sp.slots
	if rng.IntN(2) == 0 {
		mine := (len(sp.regions) - slot + sp.slots - 1) / sp.slots
		r := &sp.regions[slot+rng.IntN(mine)*sp.slots]
		prot := mmnotifier.ProtReadWrite
		if !r.readOnly {
			prot = mmnotifier.ProtRead
		}
		r.readOnly = !r.readOnly
		return sp.mm.Protect(r.addr, r.length, prot)
	}
	length := uint64(rangePages(rng)) * gfp.PageSize
	addr, err := sp.mm.Mmap(length, mmnotifier.ProtReadWrite)
	if err != nil {
		return err
	}
	return sp.mm.Unmap(addr, length)
}

// reap makes a victim with victimMappings empty mappings (reaping then
// frees nothing, so the memory condition stays as it is), registers the
// driver on it and has the OOM reaper reap it, with the kernel's 100 ms
// between tries.
func (s *mmSource) reap(ctx context.Context, dev *device, rng *rand.Rand) (int, error) {
	pid := 100_000 + s.victims.Add(1)
	victim := mmnotifier.NewMM(mmnotifier.WithZone(dev.zone), mmnotifier.WithoutReclaim(),
		mmnotifier.WithTask(pid, "victim"))
	defer victim.Exit()
	for range victimMappings {
		if _, err := victim.Mmap(uint64(rangePages(rng))*gfp.PageSize, mmnotifier.ProtReadWrite); err != nil {
			return 0, err
		}
	}
	m, err := dev.newMirror()
	if err != nil {
		return 0, fmt.Errorf("registering the driver on a victim: %w", err)
	}
	defer m.release()
	sub, err := mmnotifier.Register(victim, &notifier{m})
	if err != nil {
		return 0, err
	}
	res := victim.OOMReap(ctx)
	sub.Unregister()
	if !res.Reaped && ctx.Err() == nil {
		return res.Tries - 1, errors.New("the OOM reaper could not reap a victim")
	}
	return res.Tries - 1, nil
}

func (s *mmSource) close() error {
	for _, sp := range s.spaces {
		sp.sub.Unregister()
		sp.mirror.release()
		sp.mm.Exit()
	}
	s.spaces = nil
	return nil
}
