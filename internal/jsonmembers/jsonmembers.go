// Package jsonmembers lists the JSON members of Go struct types as
// encoding/json reads and writes them, for the API's check of unknown
// request members and the event schema the console reads.
package jsonmembers

import (
	"reflect"
	"strings"
	"sync"
)

// cache holds Of's answers by type: the types are few and fixed.
var cache sync.Map

// Of lists the members of struct type t by their json tags: a field
// tagged "-" has none, an untagged exported field is its Go name, and an
// embedded struct's members are the outer one's.
func Of(t reflect.Type) []string {
	if names, ok := cache.Load(t); ok {
		return names.([]string)
	}
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case name != "":
			names = append(names, name)
		case f.Anonymous && f.Type.Kind() == reflect.Struct:
			names = append(names, Of(f.Type)...)
		case f.IsExported():
			names = append(names, f.Name)
		}
	}
	cache.Store(t, names)
	return names
}
