package engine

import "github.com/stickyroute/stickyroute/store"

// RoutingState says whether a pod takes users: Ready, DenyNewCall or
// Shutdown (the zero value is unknown). It is the store's type.
type RoutingState = store.RoutingState

// The routing states, as the store writes them.
const (
	RoutingUnknown = store.RoutingUnknown
	Ready          = store.Ready
	DenyNewCall    = store.DenyNewCall
	Shutdown       = store.Shutdown
)
