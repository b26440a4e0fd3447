// Command sleep is a test function that never reads stdin and sleeps for a
// minute, for timeout and cancellation tests.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	fmt.Fprintln(os.Stderr, "sleeping")
	time.Sleep(time.Minute)
	fmt.Println(`{"slept": true}`)
}
