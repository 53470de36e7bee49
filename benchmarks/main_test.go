package benchmarks

import (
	"testing"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

func TestMain(m *testing.M) {
	redistest.VerifyTestMain(m)
}
