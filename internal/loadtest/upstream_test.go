package loadtest

import (
	"context"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

func TestClockJump(t *testing.T) {
	t.Parallel()
	const tick = 100_000 // µs
	c := NewClock(time.UnixMicro(1_000_000), tick*time.Microsecond)
	tests := []struct {
		name     string
		at       int64         // Jump's instant; 0: no jump
		by       time.Duration // Jump's offset
		wall     int64
		wantSim  int64
		wantJump int64 // the jump's instant once rounded to the grid
	}{
		{name: "no jump: the grid", wall: 1_250_000, wantSim: 1_200_000},
		{name: "before the jump", at: 2_000_000, by: 10 * time.Second, wall: 1_999_999, wantSim: 1_900_000, wantJump: 2_000_000},
		{name: "at the jump", at: 2_000_000, by: 10 * time.Second, wall: 2_000_000, wantSim: 12_000_000, wantJump: 2_000_000},
		{name: "after the jump", at: 2_000_000, by: 10 * time.Second, wall: 2_345_678, wantSim: 12_300_000, wantJump: 2_000_000},
		{name: "an instant off the grid rounds up", at: 2_000_001, by: time.Second, wall: 2_050_000, wantSim: 2_000_000, wantJump: 2_100_000},
		{name: "the offset rounds down to ticks", at: 2_000_000, by: 1_250 * time.Millisecond, wall: 2_000_000, wantSim: 3_200_000, wantJump: 2_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewClock(time.UnixMicro(1_000_000), tick*time.Microsecond)
			if tt.at != 0 {
				c.Jump(tt.at, tt.by)
				if got := c.jumpAt.Load(); got != tt.wantJump {
					t.Errorf("jump at %d, want %d", got, tt.wantJump)
				}
			}
			if got := c.Sim(tt.wall); got != tt.wantSim {
				t.Errorf("Sim(%d) = %d, want %d", tt.wall, got, tt.wantSim)
			}
		})
	}
	// A running clock reads the jump too; a manual one does not.
	c.Jump(time.Now().UnixMicro()-10*tick, time.Hour)
	if got := time.Until(c.Now()); got < 59*time.Minute || got > time.Hour {
		t.Errorf("running Now() after a jump of 1h is %v ahead", got)
	}
	c.SetManual(123_456)
	if got := c.Now().UnixMicro(); got != 123_456 {
		t.Errorf("manual Now() = %d", got)
	}
}

// TestFinishIn: after FinishIn every batch is finalizing, then completes
// in [d, d + Phase/100), and the replayed timelines show it in wall time,
// without the states the jump skipped.
func TestFinishIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const phase, tick, d = 20 * time.Second, 10 * time.Millisecond, 150 * time.Millisecond
	up, err := StartUpstream(ctx, UpstreamOptions{Batches: 4, Phase: phase, Tick: tick})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	time.Sleep(50 * time.Millisecond)
	at, done := up.FinishIn(d)
	if at%tick.Microseconds() != up.Clock.Grid(0)%tick.Microseconds() {
		t.Errorf("jump at %d, off the grid", at)
	}
	if got := time.Duration(done-at) * time.Microsecond; got < d || got > d+phase/100 {
		t.Errorf("last completion %v after the jump, want in [%v, %v]", got, d, d+phase/100)
	}
	time.Sleep(time.Until(time.UnixMicro(done)) + 3*tick)
	_ = up.Close()
	tl, err := up.Timelines(time.Now().UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
	inProgress := uint8(batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	for b, l := range tl {
		s := l.States
		if len(s) < 3 {
			t.Fatalf("batch %d: %d states: %+v", b, len(s), s)
		}
		fin, end := s[len(s)-2], s[len(s)-1]
		if fin.At != at || fin.FP != MakeFP("finalizing", 96, 4) {
			t.Errorf("batch %d: %+v before the last state, want finalizing at the jump (%d)", b, fin, at)
		}
		if !end.FP.Terminal() || end.FP != MakeFP("completed", 96, 4) || end.At < at+d.Microseconds() || end.At > done {
			t.Errorf("batch %d: last state %+v, want completed in [%d, %d]", b, end, at+d.Microseconds(), done)
		}
		for _, st := range s[:len(s)-2] {
			if st.FP.Status != inProgress || st.At >= at {
				t.Errorf("batch %d: %+v before the jump", b, st)
			}
		}
	}
}
