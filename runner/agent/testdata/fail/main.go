// Command fail is a test function that writes a partial result and an error
// message, then exits with status 3.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println(`{"partial": true}`)
	fmt.Fprintln(os.Stderr, "something went wrong")
	os.Exit(3)
}
