package main

import (
	"testing"

	"golang.org/x/tools/go/analysis/analysistest"
)

// The analyzer flags unchecked GORM chains and thrown-away errors, and
// leaves checked ones alone.
func TestAnalyzer(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), Analyzer, "a")
}
