package function_test

import (
	"testing"

	"github.com/minilambda/minilambda/function"
)

func TestContainerCPUs(t *testing.T) {
	for _, tc := range []struct {
		s      function.Spec
		pooled float64
		want   float64
	}{
		{function.Spec{Mode: function.ModeCold}, 1, 0},
		{function.Spec{Mode: function.ModeCold, CPUs: 0.5}, 1, 0.5},
		{function.Spec{Mode: function.ModeHot}, 1, 1},
		{function.Spec{Mode: function.ModeLambda}, 0.25, 0.25},
		{function.Spec{Mode: function.ModeLambda, CPUs: 2}, 1, 2},
		{function.Spec{Mode: function.ModeHot}, 0, 0},
	} {
		if got := tc.s.ContainerCPUs(tc.pooled); got != tc.want {
			t.Errorf("%s with cpus %v, pooled %v: %v, want %v", tc.s.Mode, tc.s.CPUs, tc.pooled, got, tc.want)
		}
	}
}
