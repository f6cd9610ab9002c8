package cluster

import (
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/watch"
)

// Abandon simulates this replica's death: it forgets its leases without
// releasing them and drops its NATS connection.
func (c *Cluster) Abandon() {
	c.mu.Lock()
	c.leases = make(map[string]*lease)
	c.mu.Unlock()
	c.nc.Close()
}

// WriteState writes k's shared state with the given fencing token, as a
// replica whose lease of that revision has lapsed would.
func (c *Cluster) WriteState(k watch.Key, b *batchv1.Batch, at time.Time, token uint64) {
	c.writeState(k, b, at, token)
}

// Heard returns how many other replicas this one remembers hearing from.
func (c *Cluster) Heard() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.heard)
}
