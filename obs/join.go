package obs

import (
	"context"

	"github.com/stickyroute/stickyroute/engine"
)

// Join returns an observer that tells each of observers, in order (End in
// reverse order, so that the first one's span encloses the others' work).
// Nil observers are left out; Join of none returns nil, which the engine
// treats as no observer.
func Join(observers ...engine.Observer) engine.Observer {
	var j joined
	for _, o := range observers {
		if o != nil {
			j = append(j, o)
		}
	}
	switch len(j) {
	case 0:
		return nil
	case 1:
		return j[0]
	}
	return j
}

type joined []engine.Observer

func (j joined) Begin(ctx context.Context, op *engine.Op) context.Context {
	for _, o := range j {
		ctx = o.Begin(ctx, op)
	}
	return ctx
}

func (j joined) End(ctx context.Context, op *engine.Op) {
	for i := len(j) - 1; i >= 0; i-- {
		j[i].End(ctx, op)
	}
}

func (j joined) Note(ctx context.Context, n engine.Note) {
	for _, o := range j {
		o.Note(ctx, n)
	}
}
