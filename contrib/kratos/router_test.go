package stickykratos_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// TestRoutesByUID: every call of a user reaches the pod its link names,
// with the uid in the context or in metadata, and a stream steered by Route.
func TestRoutesByUID(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		ctx := redistest.Ctx(t)
		r, tc := dial(t, f)
		adaptertest.TestRoutes(t, f, caller(tc), func(ctx context.Context, uid string) (int, error) {
			return call(metadata.AppendToOutgoingContext(ctx, stickykratos.DefaultUIDKey, uid), tc)
		})

		link, _ := f.Client.GetLinkedPodNotCache(ctx, f.Namespace, "u7", svc)
		sctx, err := r.Route(ctx, "u7")
		if err != nil {
			t.Fatal(err)
		}
		stream, err := tc.FullDuplexCall(sctx)
		if err != nil {
			t.Fatal(err)
		}
		adaptertest.TestStream(t, stream, &testpb.StreamingOutputCallRequest{}, func(resp *testpb.StreamingOutputCallResponse) int {
			pod, err := strconv.Atoi(string(resp.Payload.Body))
			if err != nil {
				return engine.NoPod
			}
			return pod
		}, link)
	})
}

// TestFallbackWithoutUID: calls without a user spread over the pods, and
// avoid a pod that takes no new users once the client sees it.
func TestFallbackWithoutUID(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		_, tc := dial(t, f)
		adaptertest.TestFallback(t, f, caller(tc))
	})
}

// errs are the errors of this adapter: ServiceUnavailable for a pod that
// does not answer; for a user of a pod that is not routable,
// ReasonPodNotRoutable, code 503, the pod in its metadata, matching
// engine.ErrPodNotRoutable.
var errs = adaptertest.Errors{
	Unreachable: func(err error) bool { return kerrors.FromError(err).Code == 503 },
	NotRoutable: func(err error, _ string, pod int) bool {
		ke := kerrors.FromError(err)
		return ke.Reason == stickykratos.ReasonPodNotRoutable && ke.Code == 503 &&
			ke.Metadata["pod"] == strconv.Itoa(pod) && errors.Is(err, engine.ErrPodNotRoutable)
	},
}

// TestDrain: while a pod drains, new users avoid it and its users stay; after
// it shuts down, its temporary users move and a persistent user gets
// ReasonPodNotRoutable.
func TestDrain(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		_, tc := dial(t, f)
		adaptertest.TestDrain(t, f, caller(tc), errs)
	})
}

// TestPodLoss: a pod that dies without a word fails its users' calls with
// ServiceUnavailable until the engine sees it stale; then its temporary users
// move for good and its persistent user gets ReasonPodNotRoutable.
func TestPodLoss(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		_, tc := dial(t, f)
		adaptertest.TestPodLoss(t, f, caller(tc), errs)
	})
}
