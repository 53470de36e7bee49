package adapter

import (
	"errors"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
)

// CheckConfig validates what every adapter's Config holds: an engine client
// and valid namespace and service names. pkg prefixes the error
// ("stickygrpc"), which names the Config field at fault.
func CheckConfig(pkg string, c *engine.Client, ns, svc string) error {
	if c == nil {
		return errors.New(pkg + ": Config.Client is required")
	}
	if err := store.ValidateName("namespace", ns); err != nil {
		return errors.New(pkg + ": Config.Namespace: " + err.Error())
	}
	if err := store.ValidateName("service", svc); err != nil {
		return errors.New(pkg + ": Config.Service: " + err.Error())
	}
	return nil
}
