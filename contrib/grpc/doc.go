// Package stickygrpc routes grpc-go calls to the pod that holds the caller's
// user: a client interceptor reads the uid from the call, asks an
// engine.Client which pod serves it (from the client's local cache almost
// always), and a balancer sends the call to that pod's connection. Calls
// without a uid go to a pod picked by an lb strategy among the pods that take
// new users.
//
//	r, err := stickygrpc.New(stickygrpc.Config{
//		Client:    engineClient, // an *engine.Client
//		Namespace: "game", Service: "room",
//		Template:  "{svc}-{pod}.{svc}.{ns}.svc:9000", // StatefulSet pod addresses
//	})
//	if err != nil { ... }
//	defer r.Close()
//	conn, err := grpc.NewClient(r.Target(), append(r.DialOptions(),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
//	ctx = metadata.AppendToOutgoingContext(ctx, stickygrpc.DefaultUIDKey, "u42")
//	err = conn.Invoke(ctx, "/room.Room/Join", req, reply) // reaches u42's pod
//
// Pod addresses come from a Template (or an Addr function): the router's own
// resolver lists the pods the engine sees as routable and follows their
// changes. Any other gRPC resolver works too (dial its target with
// DialOptions); the balancer then needs each endpoint's pod, set with WithPod
// by the resolver or derived by Config.PodOf (StatefulSetPod reads it from a
// StatefulSet host name). Each pod gets one pick-first connection, kept
// connected.
//
// Draining and dead pods are handled as the engine says: a pod in
// DenyNewCall keeps its users and gets no new ones; a user whose pod shut
// down or stopped heartbeating is moved when its link is temporary, and a
// call for a user persistently linked to such a pod fails with a *RouteError
// (codes.Unavailable, matching engine.ErrPodNotRoutable). Client-side gRPC
// health checking is off: a pod's routing state in the engine decides, so a
// draining pod still reaches its users.
//
// The picker is a pure, immutable pod → connection table replaced whole on
// every change; a pick reads it and makes no Redis call and takes no lock.
package stickygrpc
