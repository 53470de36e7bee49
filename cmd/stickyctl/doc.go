// Command stickyctl is the operator's tool for a stickyroute fleet: it shows
// the pods of a service and where a user is linked, moves a user between
// pods without racing the fleet, drains a pod through the operator request
// its server applies on its next heartbeat (SPEC §7), watches a service's
// pods change, and serves a live console page.
//
//	stickyctl pods    -redis 127.0.0.1:6379 -ns game -svc room
//	stickyctl user    -redis 127.0.0.1:6379 -ns game u42
//	stickyctl move    -redis 127.0.0.1:6379 -ns game -svc room u42 3
//	stickyctl drain   -redis 127.0.0.1:6379 -ns game -svc room 2
//	stickyctl undrain -redis 127.0.0.1:6379 -ns game -svc room 2
//	stickyctl watch   -redis 127.0.0.1:6379 -ns game -svc room
//	stickyctl serve   -redis 127.0.0.1:6379 -ns game -svc room,chat
//
// serve listens on loopback unless given -token; with one, every request
// must carry it.
//
// Every command takes -redis ADDR (a standalone Redis), -cluster ADDRS (Redis
// Cluster nodes, comma-separated) or -embedded (an in-process Redis, to try
// the tool out), and -o table (the default) or -o json. The exit status is
// 0 when the command did what it was asked, 1 when what it looked for does
// not exist (a user with no link), and 2 on an error, which it names.
package main
