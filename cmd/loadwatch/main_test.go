package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestRunFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in the error; "" for flag.ErrHelp
	}{
		{"help", []string{"-h"}, ""},
		{"unknown flag", []string{"-nope"}, "flag provided but not defined"},
		{"stray argument", []string{"extra"}, "unexpected arguments"},
		{"bad duration", []string{"-interval", "soon"}, "invalid value"},
		{"kill without replicas", []string{"-kill", "10s"}, "need -replicas"},
		{"finish without kill", []string{"-replicas", "3", "-finish", "8s"}, "-finish needs -kill"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			switch {
			case tt.want == "" && !errors.Is(err, flag.ErrHelp):
				t.Errorf("run(%q) = %v, want flag.ErrHelp", tt.args, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}
