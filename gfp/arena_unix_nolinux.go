//go:build unix && !linux

package gfp

// Huge pages are a Linux feature here; elsewhere the mapping is ordinary.
func mapHuge(int) ([]byte, string) { return nil, "" }

func adviseHuge([]byte) string { return "mmap" }
