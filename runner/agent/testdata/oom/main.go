// Command oom is a test function that allocates and touches memory, one
// MiB at a time, until the kernel kills it.
package main

import (
	"fmt"
	"os"
)

func main() {
	var keep [][]byte
	for {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(j)
		}
		keep = append(keep, b)
		if len(keep)%16 == 0 {
			fmt.Fprintf(os.Stderr, "allocated %d MiB\n", len(keep))
		}
	}
}
