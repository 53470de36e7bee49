package engine_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The placement model: a discrete simulation (1 ms steps) of a fleet during
// a login storm, used to choose how the engine corrects loads
// (engine/placement.go cites its figures). Pods count the users they claimed
// (2 ms after placement) and publish that count every heartbeat, or also on
// change at most every pubEvery ms; clients refresh every refresh ms, early
// after earlyAfter placements (at most every 25 ms); between refreshes a
// client sees the published loads plus its own placements since each pod's
// publish, each counted weight times. Users arrive at 200/s for at least 6 s
// (sessions last 5 s on average), then stormUsers at stormRate, spread over
// the clients in turn. A run's figure is max/mean of the users per pod
// right after the storm.

type modelConfig struct {
	pods, clients, stormUsers int
	stormRate                 float64 // users per second
	heartbeat, refresh        int     // ms
	pubEvery                  int     // ms; 0: publish on heartbeats only
	earlyAfter                int     // 0: no early refresh
	weight                    string  // "own" (1), "estimate" (the engine's)
	strategy                  string  // "p2c" or "deficit" (∝ max + band − load)
}

type modelPlacement struct{ pod, at int }

type modelClient struct {
	pub, upd            []int
	own                 []modelPlacement
	lastRef, nextRef    int
	since               int
	fleet, mine, weight float64
	decayedAt           int
}

// simulate runs the model runs times and returns the median and the worst
// max/mean.
func simulate(cfg modelConfig, runs int) (median, worst float64) {
	var ratios []float64
	for run := range runs {
		ratios = append(ratios, simulateOnce(cfg, uint64(run)))
	}
	slices.Sort(ratios)
	return ratios[len(ratios)/2], ratios[len(ratios)-1]
}

func simulateOnce(cfg modelConfig, seed uint64) float64 {
	r := rand.New(rand.NewPCG(seed, 7))
	n := cfg.pods
	count, pubL, pubT := make([]int, n), make([]int, n), make([]int, n)
	lastPub, nextHB := make([]int, n), make([]int, n)
	for i := range nextHB {
		nextHB[i] = r.IntN(cfg.heartbeat)
	}
	cl := make([]*modelClient, cfg.clients)
	for i := range cl {
		cl[i] = &modelClient{pub: make([]int, n), upd: make([]int, n), nextRef: r.IntN(cfg.refresh), weight: 1}
	}
	type ev struct{ pod, at int }
	var claims, ends []ev
	const stormAt, steady, life = 6000, 200.0, 5000.0
	placedStorm, user, acc := 0, 0, 0.0
	for t := 0; ; t++ {
		k := 0
		for _, p := range claims {
			if p.at <= t {
				count[p.pod]++
				ends = append(ends, ev{p.pod, t + int(r.ExpFloat64()*life)})
			} else {
				claims[k] = p
				k++
			}
		}
		claims = claims[:k]
		k = 0
		for _, p := range ends {
			if p.at <= t {
				count[p.pod]--
			} else {
				ends[k] = p
				k++
			}
		}
		ends = ends[:k]
		if placedStorm == cfg.stormUsers && len(claims) == 0 {
			break
		}
		for i := range n {
			if t >= nextHB[i] || (cfg.pubEvery > 0 && count[i] != pubL[i] && t-lastPub[i] >= cfg.pubEvery) {
				pubL[i], pubT[i], lastPub[i], nextHB[i] = count[i], t, t, t+cfg.heartbeat
			}
		}
		for _, c := range cl {
			due := t >= c.nextRef || (cfg.earlyAfter > 0 && c.since >= cfg.earlyAfter && t-c.lastRef >= 25)
			if !due {
				continue
			}
			// What the engine's settle does: placements a newer state
			// includes stop counting, and feed the fleet estimate.
			var fleet, mine float64
			for i := range n {
				if pubT[i] > c.upd[i] {
					fleet += float64(pubL[i] - c.pub[i])
					for _, p := range c.own {
						if p.pod == i && p.at >= c.upd[i] && p.at < pubT[i] {
							mine++
						}
					}
				}
			}
			decay := math.Exp(-float64(t-c.decayedAt) / float64(4*cfg.refresh))
			c.fleet, c.mine, c.decayedAt = c.fleet*decay+fleet, c.mine*decay+mine, t
			if c.mine >= 8 {
				c.weight = min(max(math.Round(c.fleet/c.mine), 1), 64)
			}
			copy(c.pub, pubL)
			copy(c.upd, pubT)
			c.own = slices.DeleteFunc(c.own, func(p modelPlacement) bool { return p.at < c.upd[p.pod] })
			c.lastRef, c.nextRef, c.since = t, t+cfg.refresh, 0
		}
		storm := t >= stormAt && placedStorm < cfg.stormUsers
		rate := steady
		if storm {
			rate = cfg.stormRate
		}
		acc += rate / 1000
		for acc >= 1 && (t < stormAt || placedStorm < cfg.stormUsers) {
			acc--
			c := cl[user%cfg.clients]
			user++
			if storm {
				placedStorm++
			}
			w := 1.0
			if cfg.weight == "estimate" {
				w = c.weight
			}
			corr := make([]float64, n)
			for i := range corr {
				corr[i] = float64(c.pub[i])
			}
			for _, p := range c.own {
				corr[p.pod] += w
			}
			least := slices.Min(corr)
			band := math.Max(10, 0.25*least)
			var cand []int
			for i, v := range corr {
				if v <= least+band {
					cand = append(cand, i)
				}
			}
			pod := cand[0]
			switch {
			case len(cand) == 1:
			case cfg.strategy == "deficit":
				most := 0.0
				for _, i := range cand {
					most = math.Max(most, corr[i])
				}
				total := 0.0
				for _, i := range cand {
					total += most + band - corr[i]
				}
				u := r.Float64() * total
				for _, i := range cand {
					if u -= most + band - corr[i]; u < 0 {
						pod = i
						break
					}
				}
			default:
				a, b := r.IntN(len(cand)), r.IntN(len(cand)-1)
				if b >= a {
					b++
				}
				pod = cand[a]
				if corr[cand[b]] < corr[pod] {
					pod = cand[b]
				}
			}
			c.own = append(c.own, modelPlacement{pod, t})
			c.since++
			claims = append(claims, ev{pod, t + 2})
		}
	}
	most, total := 0, 0
	for _, v := range count {
		most, total = max(most, v), total+v
	}
	return float64(most) / (float64(total) / float64(n))
}

// TestPlacementModel prints the model's figures for the corrections the
// engine could make, on 4 clients placing 5,000 users on 4 pods at 10,000
// a second (pods heartbeating every 500 ms, clients refreshing every
// 250 ms, as the load generator runs), 20 runs each, and checks that the
// engine's choice (the weight estimate, early refreshes) ends within 1.10
// where its own-only correction does not.
func TestPlacementModel(t *testing.T) {
	base := modelConfig{pods: 4, clients: 4, stormUsers: 5000, stormRate: 10000, heartbeat: 500, refresh: 250,
		earlyAfter: 16, weight: "estimate", strategy: "p2c"}
	variants := []struct {
		name string
		edit func(*modelConfig)
	}{
		{"own placements only (weight 1), no early refresh", func(c *modelConfig) { c.weight, c.earlyAfter = "own", 0 }},
		{"own placements only, early refresh", func(c *modelConfig) { c.weight = "own" }},
		{"own placements only, deficit-proportional", func(c *modelConfig) { c.weight, c.strategy = "own", "deficit" }},
		{"own placements only, pods publish every 50 ms", func(c *modelConfig) { c.weight, c.pubEvery = "own", 50 }},
		{"weight estimate, early refresh (the engine)", func(c *modelConfig) {}},
		{"weight estimate, deficit-proportional", func(c *modelConfig) { c.strategy = "deficit" }},
		{"weight estimate, pods publish every 50 ms", func(c *modelConfig) { c.pubEvery = 50 }},
		{"weight estimate, 8 clients", func(c *modelConfig) { c.clients = 8 }},
		{"weight estimate, one client", func(c *modelConfig) { c.clients = 1 }},
		{"weight estimate, 50,000 a second", func(c *modelConfig) { c.stormRate = 50000 }},
	}
	got := map[string]float64{}
	for _, v := range variants {
		cfg := base
		v.edit(&cfg)
		median, worst := simulate(cfg, 20)
		got[v.name] = median
		t.Logf("%-50s max/mean median %.3f, worst %.3f", v.name, median, worst)
	}
	if m := got["weight estimate, early refresh (the engine)"]; m > 1.10 {
		t.Errorf("the engine's correction ends at %.3f in the model, want ≤ 1.10", m)
	}
	if m := got["own placements only, early refresh"]; m <= 1.10 {
		t.Errorf("own-only correction ends at %.3f: the model no longer shows the herding the weight fixes", m)
	}
}
