package cpu

import "math"

// Cross-entropy over a classifier computed one vocabulary chunk at a time:
// the caller computes logits for columns [c0, c0+w) of every row into a
// chunk buffer [n, w], folds each chunk into per-row running statistics with
// CEChunkForward, and finishes with CEChunkLoss. The backward pass recomputes
// each chunk and turns it into its logit gradient in place with
// CEChunkBackward. The [n, V] logits never exist at once.

type ceArgs struct {
	logits, m, s, tl, lse []float32
	targets               []int32
	w, c0                 int
	first                 bool
	scale                 float32
}

var ceJobs jobs[ceArgs]

// CEChunkForward folds the chunk logits [n, w] (columns c0.. of the full
// rows) into each row's running max m, sum of exp(logit - m) s, and target
// logit tl (set when the row's target falls in the chunk). first starts the
// statistics afresh.
func CEChunkForward(p *Pool, logits, m, s, tl []float32, targets []int32, n, w, c0 int, first bool) {
	parallel(p, &ceJobs, n, rowGrain(w), ceArgs{logits: logits, m: m, s: s, tl: tl, targets: targets, w: w, c0: c0, first: first}, ceChunkRange)
}

func ceChunkRange(a *ceArgs, lo, hi int) {
	w := a.w
	for i := lo; i < hi; i++ {
		row := a.logits[i*w : i*w+w]
		mc := vMax(row)
		switch {
		case a.first:
			a.m[i], a.s[i] = mc, vExpSum(row, mc)
		case mc > a.m[i]:
			a.s[i] = a.s[i]*expf(a.m[i]-mc) + vExpSum(row, mc)
			a.m[i] = mc
		default:
			a.s[i] += vExpSum(row, a.m[i])
		}
		if t := int(a.targets[i]) - a.c0; t >= 0 && t < w {
			a.tl[i] = row[t]
		}
	}
}

// CEChunkLoss finishes the statistics of CEChunkForward: lse = m + log(s)
// per row and losses = lse - target logit (0 for rows whose target is
// negative). It returns the number of counted rows.
func CEChunkLoss(losses, lse, m, s, tl []float32, targets []int32, n int) int {
	count := 0
	for i := 0; i < n; i++ {
		lse[i] = m[i] + float32(math.Log(float64(s[i])))
		if targets[i] >= 0 {
			losses[i] = lse[i] - tl[i]
			count++
		} else {
			losses[i] = 0
		}
	}
	return count
}

// CEChunkBackward turns the chunk logits [n, w] (columns c0.. of the full
// rows) into d(loss)/d(logits) in place: scale*(softmax - onehot(target)),
// from each row's log-sum-exp; rows whose target is negative get zeros.
func CEChunkBackward(p *Pool, logits, lse []float32, targets []int32, n, w, c0 int, scale float32) {
	parallel(p, &ceJobs, n, rowGrain(w), ceArgs{logits: logits, lse: lse, targets: targets, w: w, c0: c0, scale: scale}, ceChunkBackRange)
}

func ceChunkBackRange(a *ceArgs, lo, hi int) {
	w := a.w
	for i := lo; i < hi; i++ {
		row := a.logits[i*w : i*w+w]
		t := int(a.targets[i])
		if t < 0 {
			clear(row)
			continue
		}
		vExpScale(row, row, a.lse[i], a.scale)
		if t -= a.c0; t >= 0 && t < w {
			row[t] -= a.scale
		}
	}
}

// CEChunkCols returns the vocabulary chunk width for n rows and a vocabulary
// of v: about 2^20 logits per chunk (4 MiB), at least 256 columns.
func CEChunkCols(n, v int) int {
	c := max(256, (1<<20)/max(n, 1))
	c = c &^ 63
	return min(c, v)
}
