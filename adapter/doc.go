// Package adapter holds what the framework adapters (contrib/grpc and
// contrib/kratos, modules of their own) share, written once: the metadata key
// a call's user travels under, the pod address template, and reading a pod's
// index from a StatefulSet host name. Applications use it through the
// adapters; an adapter for another framework starts here.
package adapter
