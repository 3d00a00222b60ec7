package model

import "math"

// ropeTables returns cos and sin tables [seqLen, rot/2] for the config's RoPE
// variant (default, linear, dynamic, yarn, llama3, longrope), following the
// Hugging Face definitions, including their attention scaling factor.
//
// seqLen is the sequence length the frequencies are chosen for (dynamic
// NTK's base, longrope's short or long factors), as Hugging Face chooses
// them from the positions of the current forward pass.
func ropeTables(c *Config, rows, seqLen int) (cos, sin []float32) {
	rot := c.RotaryDim()
	half := rot / 2
	inv, scale := ropeInvFreq(c, seqLen)
	seqLen = rows
	cos = make([]float32, seqLen*half)
	sin = make([]float32, seqLen*half)
	for p := 0; p < seqLen; p++ {
		for i := 0; i < half; i++ {
			// HF computes the angle in float32; do the same so positions far
			// from zero round as they do there.
			a := float64(float32(p) * inv[i])
			cos[p*half+i] = float32(math.Cos(a) * scale)
			sin[p*half+i] = float32(math.Sin(a) * scale)
		}
	}
	return cos, sin
}

// RoPETables is ropeTables for other backends: cos and sin [rows, rot/2]
// with frequencies chosen for a sequence of seqLen positions.
func RoPETables(c *Config, rows, seqLen int) (cos, sin []float32) { return ropeTables(c, rows, seqLen) }

func ropeInvFreq(c *Config, seqLen int) ([]float32, float64) {
	rot := c.RotaryDim()
	half := rot / 2
	base := c.RopeTheta
	if base == 0 {
		base = 10000
	}
	rs := c.RopeScaling
	kind := "default"
	if rs != nil && rs.Type != "" {
		kind = rs.Type
	}
	origMax := c.MaxSeq
	if rs != nil && rs.OriginalMaxPos > 0 {
		origMax = rs.OriginalMaxPos
	}
	if kind == "dynamic" && seqLen > origMax {
		f := rs.Factor
		base *= math.Pow(f*float64(seqLen)/float64(origMax)-(f-1), float64(rot)/float64(rot-2))
	}
	inv := make([]float32, half)
	for i := range inv {
		inv[i] = float32(1 / math.Pow(base, float64(2*i)/float64(rot)))
	}
	scale := 1.0
	switch kind {
	case "linear":
		for i := range inv {
			inv[i] /= float32(rs.Factor)
		}
	case "llama3":
		lowWave := float64(origMax) / rs.LowFreqFactor
		highWave := float64(origMax) / rs.HighFreqFactor
		for i, f := range inv {
			wave := 2 * math.Pi / float64(f)
			switch {
			case wave > lowWave:
				inv[i] = f / float32(rs.Factor)
			case wave < highWave:
			default:
				s := (float64(origMax)/wave - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				inv[i] = float32((1-s)*float64(f)/rs.Factor + s*float64(f))
			}
		}
	case "yarn":
		// transformers takes the factor as max_position_embeddings over
		// original_max_position_embeddings when the latter is given.
		factor := rs.Factor
		if rs.OriginalMaxPos > 0 {
			factor = float64(c.MaxSeq) / float64(rs.OriginalMaxPos)
		}
		betaFast, betaSlow := rs.BetaFast, rs.BetaSlow
		if betaFast == 0 {
			betaFast = 32
		}
		if betaSlow == 0 {
			betaSlow = 1
		}
		corr := func(n float64) float64 {
			return float64(rot) * math.Log(float64(origMax)/(n*2*math.Pi)) / (2 * math.Log(base))
		}
		lo := math.Max(math.Floor(corr(betaFast)), 0)
		hi := math.Min(math.Ceil(corr(betaSlow)), float64(rot-1))
		if lo == hi {
			hi += 0.001
		}
		for i, f := range inv {
			ramp := math.Min(math.Max((float64(i)-lo)/(hi-lo), 0), 1)
			extra := 1 - ramp
			inv[i] = float32(float64(f)/factor*(1-extra) + float64(f)*extra)
		}
		scale = rs.AttnFactor
		if scale == 0 {
			scale = 1
			if factor > 1 {
				scale = 0.1*math.Log(factor) + 1
			}
		}
	case "longrope":
		ext := rs.ShortFactor
		if seqLen > origMax && len(rs.LongFactor) > 0 {
			ext = rs.LongFactor
		}
		for i := range inv {
			e := 1.0
			if i < len(ext) {
				e = ext[i]
			}
			inv[i] = float32(1 / (e * math.Pow(base, float64(2*i)/float64(rot))))
		}
		scale = rs.AttnFactor
		if scale == 0 {
			f := rs.Factor
			if rs.OriginalMaxPos > 0 {
				f = float64(c.MaxSeq) / float64(origMax)
			}
			if f > 1 {
				scale = math.Sqrt(1 + math.Log(f)/math.Log(float64(origMax)))
			}
		}
	}
	return inv, scale
}
