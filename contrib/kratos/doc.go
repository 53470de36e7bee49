// Package stickykratos routes Kratos v2 gRPC client calls to the pod that
// holds the caller's user: a client middleware asks an engine.Client which
// pod serves the call's uid (from the client's local cache almost always),
// and a node filter, given to the client, keeps only that pod's node. Calls
// without a uid go to the pods that take new users, picked by the client's
// selector.
//
//	r, err := stickykratos.New(stickykratos.Config{
//		Client: engineClient, Namespace: "game", Service: "room",
//	})
//	if err != nil { ... }
//	conn, err := kgrpc.DialInsecure(ctx,
//		kgrpc.WithEndpoint("discovery:///room"),
//		kgrpc.WithDiscovery(discovery), // each instance names its pod, see below
//		kgrpc.WithMiddleware(r.Middleware()),
//		kgrpc.WithNodeFilter(r.Filter()),
//		kgrpc.WithSubset(0),         // every pod must be a node
//		kgrpc.WithHealthCheck(false), // the engine's routing state decides
//	)
//	ctx = stickykratos.ContextWithUID(ctx, "u42")
//	reply, err := pb.NewRoomClient(conn).Join(ctx, req) // reaches u42's pod
//
// # Which pod a node is
//
// Each service instance carries its pod index in its metadata under
// MetadataKey ("stickyroute-pod"): register your pods with it, or use
// Router.Discovery, which lists the pods the engine sees as routable at the
// addresses you give (a StatefulSet template such as
// "{svc}-{pod}.{svc}.{ns}.svc:9000"). Config.PodOf reads it another way.
//
// # The Kratos settings that matter
//
//   - Subset size: the Kratos gRPC client keeps a random subset of 25
//     instances by default (WithSubset). A user linked to a pod outside the
//     subset could never be reached: pass WithSubset(0) (no subset), or a size
//     at least the number of pods.
//   - Health check: the Kratos client asks each pod's gRPC health service
//     and drops a pod that answers NOT_SERVING. A pod in the engine's
//     DenyNewCall drain must still reach its users, so either keep its
//     health SERVING until it shuts down (a Kratos server turns it to
//     NOT_SERVING when it stops: stop it after engine.Server.Stop returns),
//     or pass WithHealthCheck(false) and let the engine's routing state
//     decide.
//   - Timeout: the middleware's lookup counts against the call's timeout
//     (WithTimeout, 2s by default); a cache miss is one or two Redis round
//     trips.
//   - Streams: Kratos runs client middleware per message, after the stream
//     has its pod, so a stream is steered with Router.Route before it opens.
//
// # Errors and pod changes
//
// A pod whose connection is not READY is not a node: a call for its users
// fails with the Kratos error ServiceUnavailable, reason ReasonPodUnreachable,
// its metadata naming the pod. A call the engine cannot route fails before
// anything is sent, with a Kratos error whose reason says why (the Reason
// constants) and whose cause is the engine's error. Draining and dead pods
// are handled as the engine says: a pod in DenyNewCall keeps its users and gets no new ones; a user
// whose pod shut down or stopped heartbeating is moved when its link is
// temporary, and a user persistently linked to such a pod gets
// ReasonPodNotRoutable (errors.Is matches engine.ErrPodNotRoutable).
package stickykratos
