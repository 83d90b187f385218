package main

import (
	"fmt"
	"regexp"
	"strconv"
)

// machineType is one Compute Engine machine type: the GKE API validates node pools against the zone's list.
type machineType struct {
	CPUs     int
	MemoryMB int
}

// machineTypes is a subset of real GCE predefined types (https://cloud.google.com/compute/docs/machine-resource),
// enough for what GKE users pick; sizes as Compute Engine reports them (guestCpus, memoryMb).
var machineTypes = func() map[string]machineType {
	m := map[string]machineType{
		"e2-micro":  {2, 1024},
		"e2-small":  {2, 2048},
		"e2-medium": {2, 4096},
	}
	add := func(family string, cpus []int, gbPerCPU float64) {
		for _, n := range cpus {
			m[fmt.Sprintf("%s-%d", family, n)] = machineType{n, int(float64(n) * gbPerCPU * 1024)}
		}
	}
	add("e2-standard", []int{2, 4, 8, 16, 32}, 4)
	add("e2-highmem", []int{2, 4, 8, 16}, 8)
	add("e2-highcpu", []int{2, 4, 8, 16, 32}, 1)
	add("n2-standard", []int{2, 4, 8, 16, 32, 48, 64, 80, 96, 128}, 4)
	add("n2-highmem", []int{2, 4, 8, 16, 32, 48, 64, 80, 96, 128}, 8)
	add("n2-highcpu", []int{2, 4, 8, 16, 32, 48, 64, 80, 96}, 1)
	add("n2d-standard", []int{2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224}, 4)
	add("n2d-highmem", []int{2, 4, 8, 16, 32, 48, 64, 80, 96}, 8)
	add("n2d-highcpu", []int{2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224}, 1)
	add("n1-standard", []int{1, 2, 4, 8, 16, 32, 64, 96}, 3.75)
	add("n1-highmem", []int{2, 4, 8, 16, 32, 64, 96}, 6.5)
	add("n1-highcpu", []int{2, 4, 8, 16, 32, 64, 96}, 0.9)
	add("c3-standard", []int{4, 8, 22, 44, 88, 176}, 4)
	add("c3-highmem", []int{4, 8, 22, 44, 88, 176}, 8)
	add("t2d-standard", []int{1, 2, 4, 8, 16, 32, 48, 60}, 4)
	return m
}()

// customRE matches custom machine types, e.g. e2-custom-4-16384 (vCPUs, memory MiB).
var customRE = regexp.MustCompile(`^(e2|n2|n2d|n1)-custom-(\d+)-(\d+)$`)

func lookupMachine(name string) (machineType, bool) {
	if mt, ok := machineTypes[name]; ok {
		return mt, true
	}
	if g := customRE.FindStringSubmatch(name); g != nil {
		cpus, _ := strconv.Atoi(g[2])
		mem, _ := strconv.Atoi(g[3])
		// Compute Engine: memory a multiple of 256 MiB, 0.5-8 GiB per vCPU (extended memory not modelled).
		if cpus >= 1 && cpus <= 96 && mem%256 == 0 && mem >= cpus*512 && mem <= cpus*8192 {
			return machineType{cpus, mem}, true
		}
	}
	return machineType{}, false
}
