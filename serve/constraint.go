package serve

import (
	"github.com/mai-llm/mai/infer"
)

// constraintFor turns response_format into a constraint factory (nil for
// plain text).
func constraintFor(m *Model, rf *ResponseFormat) (func() (infer.Constraint, error), error) {
	if rf == nil || rf.Type == "" || rf.Type == "text" {
		return nil, nil
	}
	return nil, badRequest("response_format.type", "Invalid value: '%s'. Supported values are: 'text'.", rf.Type)
}
