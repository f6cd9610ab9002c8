package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batchgate/batchgate/internal/simulator"
)

// Clock is the simulator's clock: wall time floored to a grid of Tick, so
// that every upstream change happens at a known grid instant. It can be
// switched to a manual time, to create batches in the past and to replay
// their history afterwards, and it can jump forward once (Jump), to bring
// the batches to their end during a run.
type Clock struct {
	baseUs, tickUs int64
	manual         atomic.Bool
	manualUs       atomic.Int64
	// From the wall instant jumpAt (Unix µs, on the grid) on, the clock
	// reads jumpBy µs ahead of wall time.
	jumpAt, jumpBy atomic.Int64
}

// NewClock returns a running clock whose grid starts at base.
func NewClock(base time.Time, tick time.Duration) *Clock {
	c := &Clock{baseUs: base.UnixMicro(), tickUs: max(tick.Microseconds(), 1)}
	c.jumpAt.Store(math.MaxInt64)
	return c
}

// Now is the simulator's Options.Now.
func (c *Clock) Now() time.Time {
	if c.manual.Load() {
		return time.UnixMicro(c.manualUs.Load())
	}
	return time.UnixMicro(c.Sim(time.Now().UnixMicro()))
}

// Sim returns what the running clock reads at wall instant us (Unix µs):
// us floored to the grid, plus the jump once it happened.
func (c *Clock) Sim(us int64) int64 {
	g := c.Grid(c.Step(us))
	if g >= c.jumpAt.Load() {
		g += c.jumpBy.Load()
	}
	return g
}

// Jump makes the clock read by (a whole number of ticks, rounded down)
// ahead of wall time from the wall instant at on (rounded up to the grid):
// every state the simulator would have shown in between is skipped. One
// jump per clock; a later call replaces the earlier.
func (c *Clock) Jump(at int64, by time.Duration) {
	k := c.Step(at)
	if c.Grid(k) < at {
		k++
	}
	c.jumpBy.Store(by.Microseconds() / c.tickUs * c.tickUs)
	c.jumpAt.Store(c.Grid(k))
}

// Step returns the grid step in force at instant us (Unix µs).
func (c *Clock) Step(us int64) int64 {
	d := us - c.baseUs
	k := d / c.tickUs
	if d < 0 && d%c.tickUs != 0 {
		k--
	}
	return k
}

// Grid returns the instant (Unix µs) grid step k starts.
func (c *Clock) Grid(k int64) int64 { return c.baseUs + k*c.tickUs }

// SetManual stops the clock at us (Unix µs) until Run.
func (c *Clock) SetManual(us int64) {
	c.manualUs.Store(us)
	c.manual.Store(true)
}

// Run makes the clock follow wall time again.
func (c *Clock) Run() { c.manual.Store(false) }

// Phases label the upstream requests by who made them.
const (
	PhaseSetup int32 = iota
	PhaseGRPC
	PhaseSSE
	PhaseNaive
	// PhaseCluster labels the replicas sharing leases (RunReplicas).
	PhaseCluster
)

// Request is one GET /v1/batches/{id} the upstream served.
type Request struct {
	// At is when the response was ready to be written (Unix µs).
	At int64
	// Batch is the index of the batch in Upstream.IDs, or -1.
	Batch int32
	// Phase is the phase current when it was served.
	Phase int32
	// FP is the state returned; zero unless the phase records states.
	FP FP
	// Via is the listener it came through: 0 for URL, i for URLs[i-1]
	// (see Listen), which tells the replicas apart.
	Via int32
}

// UpstreamOptions configures StartUpstream.
type UpstreamOptions struct {
	// Batches is how many progressing batches to create.
	Batches int
	// Phase is the simulator's Phase: how long a batch validates, runs and
	// finalizes. Batches are created one Phase in the past, so they start
	// in in_progress, their request counts rising by one every Phase/100.
	Phase time.Duration
	// Tick is the simulator clock's grid.
	Tick time.Duration
}

// Upstream is the simulator on a loopback HTTP server, behind a wrapper
// that logs every GET /v1/batches/{id}.
type Upstream struct {
	Sim   *simulator.Simulator
	Clock *Clock
	// URL is the base URL; Key the Bearer key.
	URL, Key string
	// IDs are the created batches.
	IDs   []string
	index map[string]int32
	// Start is the grid instant the batches were created at (Unix µs): in
	// the simulator's eyes, one Phase (and a stagger) later than their
	// created_at.
	Start int64
	// created holds each batch's creation instant on the simulator's
	// clock (Unix µs); simPhase is the simulator's Phase.
	created  []int64
	simPhase time.Duration

	srv   *http.Server
	phase atomic.Int32
	// vias maps the extra listeners' addresses to their Via; nil until
	// Listen.
	vias atomic.Pointer[map[string]int32]
	// statesIn is a bit set of the phases whose requests record FP.
	statesIn atomic.Uint32

	mu  sync.Mutex
	log []Request

	bufs sync.Pool
}

// StartUpstream creates the simulator and its batches and serves them on a
// loopback port until Close.
func StartUpstream(ctx context.Context, o UpstreamOptions) (*Upstream, error) {
	if o.Batches < 1 || o.Phase <= 0 || o.Tick <= 0 {
		return nil, errors.New("loadtest: upstream needs batches, a phase and a tick")
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	now := time.Now()
	u := &Upstream{
		Clock:    NewClock(now, o.Tick),
		Key:      "sk-load-" + hex.EncodeToString(raw[:]),
		index:    make(map[string]int32, o.Batches),
		bufs:     sync.Pool{New: func() any { return new(bytes.Buffer) }},
		simPhase: o.Phase,
	}
	u.Sim = simulator.New(simulator.Options{APIKey: u.Key, Now: u.Clock.Now, Phase: o.Phase})

	// Create each batch one Phase (plus a stagger of up to one count step)
	// before the current grid instant, on the grid: every batch is in
	// in_progress now and changes at grid instants only, batches at
	// different instants.
	now0 := u.Clock.Grid(u.Clock.Step(now.UnixMicro()))
	step := o.Phase / 100
	for i := range o.Batches {
		stagger := (step * time.Duration(i) / time.Duration(o.Batches)).Truncate(o.Tick)
		at := now0 - (o.Phase + stagger).Microseconds()
		u.Clock.SetManual(at)
		b := u.Sim.Create(simulator.CreateRequest{InputFileID: fmt.Sprintf("file_load_%03d", i)})
		u.index[b.ID] = int32(i)
		u.IDs = append(u.IDs, b.ID)
		u.created = append(u.created, at)
	}
	u.Clock.Run()
	u.Start = now0

	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u.URL = "http://" + lis.Addr().String()
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = u.srv.Serve(lis) }()
	return u, nil
}

// Listen serves the upstream on one more loopback port and returns its
// base URL; the requests through it have Via 1 for the first call, 2 for
// the second, and so on. Not safe for concurrent use.
func (u *Upstream) Listen(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	m := make(map[string]int32)
	if old := u.vias.Load(); old != nil {
		maps.Copy(m, *old)
	}
	m[lis.Addr().String()] = int32(len(m) + 1)
	u.vias.Store(&m)
	go func() { _ = u.srv.Serve(lis) }()
	return "http://" + lis.Addr().String(), nil
}

// FinishIn fast-forwards the simulator's clock (Clock.Jump) at its next
// grid instant so that every batch completes, its terminal state, between
// d and d + Phase/100 later in wall time (the batches' creations are
// staggered over Phase/100), and returns the wall instants of the jump and
// of the last completion (Unix µs). With d well below Phase, every batch is
// finalizing from the jump to its completion. The clock never goes back: a
// batch that would complete before d does so on its own time.
func (u *Upstream) FinishIn(d time.Duration) (at, done int64) {
	c := u.Clock
	at = c.Grid(c.Step(time.Now().UnixMicro()) + 1)
	first, last := slices.Min(u.created), slices.Max(u.created)
	end := 3 * u.simPhase.Microseconds() // validating, in_progress, finalizing
	// The first batch completes at first+end on the simulator's clock,
	// which must read that at the wall instant at+d.
	by := max(first+end-(at+d.Microseconds()), c.jumpBy.Load())
	c.Jump(at, time.Duration(by)*time.Microsecond)
	by = c.jumpBy.Load()
	return at, last + end - by
}

// Close stops the server.
func (u *Upstream) Close() error { return u.srv.Close() }

// SetPhase labels the requests from now on.
func (u *Upstream) SetPhase(p int32, recordStates bool) {
	for {
		old := u.statesIn.Load()
		next := old &^ (1 << p)
		if recordStates {
			next = old | 1<<p
		}
		if u.statesIn.CompareAndSwap(old, next) {
			break
		}
	}
	u.phase.Store(p)
}

// Requests returns a copy of the log.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.log...)
}

// bufWriter buffers a response so that the wrapper can read it.
type bufWriter struct {
	h    http.Header
	code int
	buf  *bytes.Buffer
}

func (b *bufWriter) Header() http.Header { return b.h }
func (b *bufWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}
func (b *bufWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.buf.Write(p)
}

// ServeHTTP serves the simulator, logging GET /v1/batches/{id}.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const prefix = "/v1/batches/"
	id, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok || r.Method != http.MethodGet || id == "" || strings.Contains(id, "/") {
		u.Sim.ServeHTTP(w, r)
		return
	}
	buf := u.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer u.bufs.Put(buf)
	bw := &bufWriter{h: w.Header(), buf: buf}
	u.Sim.ServeHTTP(bw, r)
	if bw.code == 0 {
		bw.code = http.StatusOK
	}

	phase := u.phase.Load()
	req := Request{At: time.Now().UnixMicro(), Batch: -1, Phase: phase}
	if i, ok := u.index[id]; ok {
		req.Batch = i
	}
	if m := u.vias.Load(); m != nil {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			req.Via = (*m)[a.String()]
		}
	}
	if bw.code == http.StatusOK && u.statesIn.Load()&(1<<phase) != 0 {
		req.FP, _, _ = ParseFP(buf.Bytes())
	}
	u.mu.Lock()
	u.log = append(u.log, req)
	u.mu.Unlock()

	w.WriteHeader(bw.code)
	_, _ = w.Write(buf.Bytes())
}

// Timelines replays the batches' history from Start to until
// (Unix µs) on the simulator's grid and returns one Timeline per batch. The
// instants are wall time: after a Jump, the states the jump skipped are
// not in it.
// It stops the clock while it runs: call it after the servers stopped.
func (u *Upstream) Timelines(until int64) ([]*Timeline, error) {
	defer u.Clock.Run()
	from := u.Clock.Step(u.Start)
	to := u.Clock.Step(until)
	out := make([]*Timeline, len(u.IDs))
	for i, id := range u.IDs {
		var states []State
		for k := from; k <= to; k++ {
			at := u.Clock.Grid(k)
			u.Clock.SetManual(u.Clock.Sim(at))
			fp, err := u.peek(id)
			if err != nil {
				return nil, fmt.Errorf("replaying %s: %w", id, err)
			}
			if len(states) == 0 || states[len(states)-1].FP != fp {
				states = append(states, State{At: at, FP: fp})
			}
		}
		out[i] = NewTimeline(states)
	}
	return out, nil
}

// peek reads batch id from the simulator directly, bypassing the log.
func (u *Upstream) peek(id string) (FP, error) {
	r := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/v1/batches/"+id, nil)
	r.Header.Set("Authorization", "Bearer "+u.Key)
	w := httptest.NewRecorder()
	u.Sim.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return FP{}, fmt.Errorf("status %d", w.Code)
	}
	fp, _, err := ParseFP(w.Body.Bytes())
	return fp, err
}
