package service

import "context"

// item is what a filtered page holds: a batch or a file.
type item interface{ GetId() string }

// page is what filterPages builds: the items, where it starts and ends,
// and whether more follow.
type page[T item] struct {
	items           []T
	firstID, lastID string
	hasMore         bool
}

// filterPages reads upstream pages of up to maxListLimit items after
// after, keeping the items keep accepts, until it has limit of them and
// knows whether one more follows (has_more is exact), the upstream has no
// more, or maxScanPages pages were read. At that bound it answers what it
// has with has_more set; an empty page then carries, as last_id, where the
// scan stopped, so that gRPC and plain REST clients can go on from there.
func filterPages[T item](ctx context.Context, after string, limit int, keep func(T) bool,
	fetch func(ctx context.Context, after string) (items []T, hasMore bool, err error)) (page[T], error) {
	var p page[T]
	finish := func() page[T] {
		if n := len(p.items); n > 0 {
			p.firstID, p.lastID = p.items[0].GetId(), p.items[n-1].GetId()
		}
		return p
	}
	for range maxScanPages {
		items, more, err := fetch(ctx, after)
		if err != nil {
			return p, err
		}
		for _, it := range items {
			if !keep(it) {
				continue
			}
			if len(p.items) == limit {
				p.hasMore = true // one more of the caller's own
				return finish(), nil
			}
			p.items = append(p.items, it)
		}
		if !more || len(items) == 0 {
			return finish(), nil
		}
		after = items[len(items)-1].GetId()
	}
	p.hasMore = true
	finish()
	if len(p.items) == 0 {
		p.lastID = after
	}
	return p, nil
}
