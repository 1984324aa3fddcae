// Package api holds careloop's OpenAPI document, embedded in the binary.
package api

import _ "embed"

// Spec is api/openapi.yaml.
//
//go:embed openapi.yaml
var Spec []byte
