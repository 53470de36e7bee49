// Package examples holds runnable programs that show stickyroute at work;
// each lives in a folder of its own (sticky-demo: pods, a client and the
// script that runs them). It is a module of its own, so the root module
// does not depend on gRPC.
package examples
