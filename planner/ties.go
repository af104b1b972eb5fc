package planner

import "time"

// Spread is how far the plan's predicted score can move with the noise of
// its measured compute: the spreads of the edge and server terms it
// includes (the link's terms are taken as exact).
func (p Plan) Spread() time.Duration {
	switch p.Candidate.Kind {
	case KindEdgeOnly:
		return p.Candidate.EdgeSpread
	case KindServerRaw, KindServerJPEG:
		return p.Candidate.ServerSpread
	}
	return p.Candidate.EdgeSpread + p.Candidate.ServerSpread
}

// Tied returns the plans of ranked (best first, as Rank returns them) that
// are tied with the best: feasible, and scored no further from it than the
// two plans' spreads together, so that the measurements cannot tell which
// is faster. The best itself comes first; a result of one plan means no
// tie.
func Tied(ranked []Plan) []Plan {
	if len(ranked) == 0 || !ranked[0].Feasible {
		return nil
	}
	best := ranked[0]
	out := []Plan{best}
	for _, p := range ranked[1:] {
		if !p.Feasible {
			break
		}
		if p.Score-best.Score <= best.Spread()+p.Spread() {
			out = append(out, p)
		}
	}
	return out
}
