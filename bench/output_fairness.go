package main

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// baselineColor fills the baseline's bars where they stand beside krules'.
var baselineColor = color.RGBA{R: 0x9a, G: 0x9a, B: 0x9a, A: 0xff}

// fairnessChart draws the contended figures' longest sampled waits, krules
// beside its baseline, one pair of bars a figure, in µs: the
// fairness that a throughput ratio hides. It writes nothing when no figure
// sampled its waits (a -run that left them out).
func fairnessChart(path string, figs []figureResult) ([]string, error) {
	var contended []figureResult
	for _, f := range figs {
		if f.KrulesMaxWaitNs > 0 && f.BaselineMaxWaitNs > 0 {
			contended = append(contended, f)
		}
	}
	if len(contended) == 0 {
		return nil, nil
	}
	p := newPlot()
	p.Title.Text = "Under contention: the longest sampled wait for the lock\n(µs; shorter is fairer)"
	p.Add(plotter.NewGrid())
	names := make([]string, len(contended))
	var base, rules plotter.Values
	// The first figure on top, in the table's order.
	for i, f := range slices.Backward(contended) {
		names[len(contended)-1-i] = fmt.Sprintf("%s (vs %s)", f.Name, f.Baseline)
		base = append(base, f.BaselineMaxWaitNs/1e3)
		rules = append(rules, f.KrulesMaxWaitNs/1e3)
	}
	w := vg.Points(10)
	for _, s := range []struct {
		vals   plotter.Values
		offset vg.Length
		label  string
		col    color.Color
	}{
		{rules, w / 2, "krules", measuredColor},
		{base, -w / 2, "baseline", baselineColor},
	} {
		bars, err := plotter.NewBarChart(s.vals, w)
		if err != nil {
			return nil, err
		}
		bars.Horizontal = true
		bars.Offset = s.offset
		bars.LineStyle.Width = 0
		bars.Color = s.col
		p.Add(bars)
		p.Legend.Add(s.label, bars)
	}
	p.NominalY(names...)
	// Room on the right for the legend, clear of the longest bar.
	p.X.Min, p.X.Max = 0, 1.25*max(slices.Max(base), slices.Max(rules))
	p.Legend.Top = true
	height := vg.Length(len(contended)+2)*vg.Points(30) + 3*vg.Centimeter
	return writeChart(path, 24*vg.Centimeter, height, func(c draw.Canvas) {
		p.Draw(draw.Crop(c, vg.Points(4), -vg.Points(12), vg.Points(4), -vg.Points(4)))
	})
}
