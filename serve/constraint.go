package serve

import (
	"bytes"
	"encoding/json"

	"github.com/mai-llm/mai/infer"
)

// constraintFor turns response_format into a constraint factory (nil for
// plain text): "json_object" allows any JSON object, "json_schema" JSON
// that follows the given schema.
func constraintFor(m *Model, rf *ResponseFormat) (func() (infer.Constraint, error), error) {
	if rf == nil || rf.Type == "" || rf.Type == "text" {
		return nil, nil
	}
	var schema []byte
	switch rf.Type {
	case "json_object":
	case "json_schema":
		if rf.JSONSchema == nil || len(bytes.TrimSpace(rf.JSONSchema.Schema)) == 0 || !json.Valid(rf.JSONSchema.Schema) {
			return nil, badRequest("response_format.json_schema", "response_format json_schema needs a json_schema object with a schema.")
		}
		schema = rf.JSONSchema.Schema
	default:
		return nil, badRequest("response_format.type", "Invalid value: '%s'. Supported values are: 'text', 'json_object' and 'json_schema'.", rf.Type)
	}
	// Compile once now, so that a bad schema is a 400 before anything runs.
	if _, err := infer.NewJSONConstraint(schema, m.vocab()); err != nil {
		return nil, badRequest("response_format.json_schema.schema", "Invalid schema: %v.", err)
	}
	return func() (infer.Constraint, error) {
		c, err := infer.NewJSONConstraint(schema, m.vocab())
		if err != nil {
			return nil, badRequest("response_format.json_schema.schema", "Invalid schema: %v.", err)
		}
		return c, nil
	}, nil
}
