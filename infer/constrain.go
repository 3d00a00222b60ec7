package infer

// Constraint restricts which tokens a request may generate, such as JSON
// that matches a schema. The engine calls Mask before sampling each token,
// Advance with the token chosen, and ends the request when Done.
type Constraint interface {
	// Mask sets the logits of tokens that may not come next to -Inf
	// (end-of-sequence tokens included, until the output is complete).
	Mask(logits []float32)
	// Advance moves past the chosen token.
	Advance(id int32) error
	// Done reports whether the output is complete and nothing may follow.
	Done() bool
}
