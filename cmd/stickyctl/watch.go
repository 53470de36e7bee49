package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// event is one line of watch.
type event struct {
	Time  time.Time `json:"time"`
	Pod   int       `json:"pod"`
	Kind  string    `json:"kind"` // present, joined, left, state, load
	State string    `json:"state"`
	Load  int       `json:"load"`
	// From is the state (kind state) or load (kind load) before.
	From string `json:"from,omitempty"`
}

func (ev event) String() string {
	at := ev.Time.Format("15:04:05.000")
	switch ev.Kind {
	case "state":
		return fmt.Sprintf("%s pod %d %s → %s (load %d)", at, ev.Pod, ev.From, ev.State, ev.Load)
	case "load":
		return fmt.Sprintf("%s pod %d load %s → %d (%s)", at, ev.Pod, ev.From, ev.Load, ev.State)
	}
	return fmt.Sprintf("%s pod %d %s: %s, load %d", at, ev.Pod, ev.Kind, ev.State, ev.Load)
}

// loadJump reports whether a load change from a to b is worth a line: by at
// least 10 and by at least a fifth.
func loadJump(a, b int) bool {
	d := max(a-b, b-a)
	return d >= 10 && 5*d >= max(a, b)
}

// changes lists what changed from prev to cur (pods by index; dead pods
// count as gone).
func changes(prev, cur map[int]podRow, now time.Time) []event {
	var evs []event
	for _, i := range sortedPods(cur) {
		c := cur[i]
		ev := event{Time: now, Pod: i, State: c.State, Load: c.Load}
		p, was := prev[i]
		switch {
		case !was:
			ev.Kind = "joined"
		case p.State != c.State:
			ev.Kind, ev.From = "state", p.State
		case loadJump(p.Load, c.Load):
			ev.Kind, ev.From = "load", fmt.Sprint(p.Load)
		default:
			continue
		}
		evs = append(evs, ev)
	}
	for _, i := range sortedPods(prev) {
		if _, is := cur[i]; !is {
			evs = append(evs, event{Time: now, Pod: i, Kind: "left", State: prev[i].State, Load: prev[i].Load})
		}
	}
	return evs
}

func sortedPods(m map[int]podRow) []int {
	return slices.Sorted(maps.Keys(m))
}

func runWatch(ctx context.Context, e *env, args []string) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	if e.o.every <= 0 {
		return errors.New("-every: want a positive period")
	}
	enc := json.NewEncoder(e.out)
	printed := 0
	emit := func(ev event) bool {
		if e.json {
			_ = enc.Encode(ev)
		} else {
			fmt.Fprintln(e.out, ev)
		}
		printed++
		return e.o.events > 0 && printed >= e.o.events
	}
	alive := func(v podsView) map[int]podRow {
		m := map[int]podRow{}
		for _, p := range v.Pods {
			if p.Alive {
				m[p.Pod] = p
			}
		}
		return m
	}
	v, err := readPods(ctx, e, svc)
	if err != nil {
		return err
	}
	prev := alive(v)
	for _, i := range sortedPods(prev) {
		p := prev[i]
		if emit(event{Time: time.Now(), Pod: i, Kind: "present", State: p.State, Load: p.Load}) {
			return nil
		}
	}
	t := time.NewTicker(e.o.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil // interrupted: the watch's normal end
		case <-t.C:
		}
		v, err := readPods(ctx, e, svc)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		cur := alive(v)
		for _, ev := range changes(prev, cur, time.Now()) {
			if emit(ev) {
				return nil
			}
		}
		prev = cur
	}
}
