// Package adaptertest runs what the tests and examples of a framework adapter
// need, as net/http/httptest does for handlers: a Fleet of pods of one
// service on loopback, each an engine.Server on a Redis connection of its
// own beside the server the test gives, and the scenarios every adapter must
// pass (TestRoutes, TestFallback, TestDrain, TestPodLoss), written once.
//
//	adaptertest.Each(t, adaptertest.Config{Pods: 3, Serve: serve}, func(t *testing.T, f *adaptertest.Fleet) {
//		r := newRouter(f.Client, f.Namespace, adaptertest.Service, f.Addr) // the adapter under test
//		adaptertest.TestDrain(t, f, callThrough(r), errs)
//	})
//
// The adapters' own tests are its users; it promises nothing to others.
package adaptertest
