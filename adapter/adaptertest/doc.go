// Package adaptertest runs what the tests and examples of a framework adapter
// need, as net/http/httptest does for handlers: a Fleet of pods of one
// service on loopback, each an engine.Server on a Redis connection of its
// own beside the server the test gives, and the scenarios every adapter must
// pass (TestRoutes, TestFallback, TestDrain, TestPodLoss), written once.
//
//	f, c := adaptertest.New(t, adaptertest.Config{Redis: opt, Pods: 3, Serve: serve})
//	r := newRouter(c, f.Namespace, adaptertest.Service, f.Addr) // the adapter under test
//	adaptertest.TestDrain(t, f, c, callThrough(r), errs)
//
// The adapters' own tests are its users; it promises nothing to others.
package adaptertest
