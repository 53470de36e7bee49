package fuzz

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	closeShared()
	if code == 0 {
		if err := goleak.Find(redistest.LeakOptions()...); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
