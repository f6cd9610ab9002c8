package cluster

// Abandon simulates this replica's death: it forgets its leases without
// releasing them and drops its NATS connection.
func (c *Cluster) Abandon() {
	c.mu.Lock()
	c.leases = make(map[string]*lease)
	c.mu.Unlock()
	c.nc.Close()
}
