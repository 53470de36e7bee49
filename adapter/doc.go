// Package adapter holds what the framework adapters (contrib/grpc and
// contrib/kratos, modules of their own) share, written once: the metadata key
// a call's user travels under, the checks of their Config, the pod a call is
// steered to (ContextWithPod, and the Route a balancer marks when it has no
// connection to that pod), the pod address template, and reading a pod's
// index from a StatefulSet host name. Applications use it through the
// adapters; an adapter for another framework starts here, and tests it with
// the fleet of package adaptertest.
package adapter
