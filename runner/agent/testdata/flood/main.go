// Command flood is a test function that writes to stdout without end.
package main

import (
	"bytes"
	"os"
)

func main() {
	line := append(bytes.Repeat([]byte("x"), 1023), '\n')
	chunk := bytes.Repeat(line, 64)
	for {
		if _, err := os.Stdout.Write(chunk); err != nil {
			os.Exit(1)
		}
	}
}
