module github.com/stickyroute/stickyroute/examples

go 1.26.0

replace (
	github.com/stickyroute/stickyroute => ../
	github.com/stickyroute/stickyroute/contrib/grpc => ../contrib/grpc
)

require (
	github.com/redis/rueidis v1.0.79
	github.com/stickyroute/stickyroute v0.1.0
	github.com/stickyroute/stickyroute/contrib/grpc v0.1.0
	google.golang.org/grpc v1.85.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/puzpuzpuz/xsync/v4 v4.5.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
