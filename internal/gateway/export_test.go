package gateway

import "github.com/batchgate/batchgate/internal/watch"

// HubStats returns the shared pollers' counters, for the external tests.
func (g *Gateway) HubStats() watch.Stats { return g.hub.Stats() }

// DemoBatchIDs returns the demo simulator's batch ids, or nil outside demo
// mode, for the external tests.
func (g *Gateway) DemoBatchIDs() []string {
	if g.demo == nil {
		return nil
	}
	return g.demo.sim.DemoBatchIDs()
}
