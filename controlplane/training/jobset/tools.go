//go:build tools

// Package tools names the command the build takes from the pinned module, so that
// `go mod tidy` keeps every package it needs.
package tools

import _ "sigs.k8s.io/jobset"
