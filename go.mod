module github.com/minilambda/minilambda

go 1.26.8

require (
	github.com/docker/docker v28.5.2+incompatible // indirect
	github.com/julienschmidt/httprouter v1.3.0 // indirect
	github.com/oklog/ulid/v2 v2.1.1 // indirect
	github.com/prometheus/client_golang v1.23.2 // indirect
	go.etcd.io/bbolt v1.4.3 // indirect
	golang.org/x/sys v0.35.0 // indirect
)
