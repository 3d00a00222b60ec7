package gpu

import "github.com/mai-llm/mai/model"

// ropeTables returns cos and sin tables [rows, rot/2], the CPU model's own
// (Hugging Face's definitions, angles computed in float32); the device step
// supports the variants whose tables do not depend on the sequence length
// (default, linear, llama3). The training step's test checks them against
// the CPU model's forward pass.
func ropeTables(c *model.Config, rows int) (cos, sin []float32) {
	return model.RoPETables(c, rows, rows)
}
