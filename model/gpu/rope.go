package gpu

import (
	"math"

	"github.com/mai-llm/mai/model"
)

// ropeTables returns cos and sin tables [rows, rot/2] for the default,
// linear and llama3 RoPE variants, as model's tables (Hugging Face's
// definitions, angles computed in float32). The training step's test checks
// them against the CPU model's forward pass.
func ropeTables(c *model.Config, rows int) (cos, sin []float32) {
	rot := c.RotaryDim()
	half := rot / 2
	base := c.RopeTheta
	if base == 0 {
		base = 10000
	}
	inv := make([]float32, half)
	for i := range inv {
		inv[i] = float32(1 / math.Pow(base, float64(2*i)/float64(rot)))
	}
	if rs := c.RopeScaling; rs != nil {
		origMax := c.MaxSeq
		if rs.OriginalMaxPos > 0 {
			origMax = rs.OriginalMaxPos
		}
		switch rs.Type {
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
		}
	}
	cos = make([]float32, rows*half)
	sin = make([]float32, rows*half)
	for p := 0; p < rows; p++ {
		for i := 0; i < half; i++ {
			a := float64(float32(p) * inv[i])
			cos[p*half+i] = float32(math.Cos(a))
			sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return cos, sin
}
