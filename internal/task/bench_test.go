package task

import (
	"testing"

	"github.com/petermattis/goid"
)

func BenchmarkGoid(b *testing.B) {
	for b.Loop() {
		_ = goid.Get()
	}
}

func BenchmarkID(b *testing.B) {
	for b.Loop() {
		_ = ID()
	}
}

func BenchmarkLookupAbsent(b *testing.B) {
	for b.Loop() {
		_ = Lookup()
	}
}

func BenchmarkCurrentRelease(b *testing.B) {
	for b.Loop() {
		t := Current()
		t.ReleaseIfEmpty()
	}
}

func BenchmarkLookupPresent(b *testing.B) {
	t := Current()
	t.NonBlock = 1
	defer func() { t.NonBlock = 0; t.ReleaseIfEmpty() }()
	for b.Loop() {
		_ = Lookup()
	}
}
