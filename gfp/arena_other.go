//go:build !unix

package gfp

const haveMmap = false

func mmapArena(cfg arenaConfig) (arena, error) { return heapArena(cfg.size) }
