package benchmarks

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, redistest.LeakOptions()...)
}
