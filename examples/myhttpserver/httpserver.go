// The seed's web server: says it started, then answers every request on :1111.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Welcome to this website!")
	})
	fmt.Println("Webserver start")
	fmt.Println("  -> listen on port:1111")
	if err := http.ListenAndServe(":1111", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
