package main

import (
	"fmt"
	"image/color"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// strategyColors tell the strategies apart in the latency chart.
var strategyColors = []color.Color{
	color.RGBA{R: 0xd0, G: 0x20, B: 0x20, A: 0xff}, // 1: the bug, red
	color.RGBA{R: 0xe0, G: 0x8a, B: 0x00, A: 0xff},
	color.RGBA{R: 0x3b, G: 0x6e, B: 0xb5, A: 0xff},
	color.RGBA{R: 0x2a, G: 0x9d, B: 0x4a, A: 0xff},
	color.RGBA{R: 0x7b, G: 0x4b, B: 0xa8, A: 0xff},
	color.RGBA{R: 0x10, G: 0x9a, B: 0xa8, A: 0xff},
}

// latencyChart draws invalidation latency per strategy and condition, one
// panel per mode: a dot at the median and a bar up to p99, on a
// logarithmic scale. The maximum (in the table and the JSON) is left out:
// on a machine with more runnable goroutines than cores it is the
// scheduler's time slice, the same for every strategy.
func latencyChart(path string, results []strategyResult) ([]string, error) {
	var rows [][]*plot.Plot
	for md := range nModes {
		p, err := latencyPlot(results, md)
		if err != nil {
			return nil, err
		}
		rows = append(rows, []*plot.Plot{p})
	}
	tiles := draw.Tiles{Rows: len(rows), Cols: 1, PadX: vg.Millimeter, PadY: 6 * vg.Millimeter,
		PadTop: 3 * vg.Millimeter, PadBottom: 3 * vg.Millimeter, PadLeft: 3 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	return writeChart(path, 22*vg.Centimeter, 24*vg.Centimeter, func(c draw.Canvas) {
		canvases := plot.Align(rows, tiles, c)
		for i, row := range rows {
			row[0].Draw(canvases[i][0])
		}
	})
}

// latencyPoints are one strategy's points in a panel: X the condition
// (shifted so strategies stand side by side), Y the median, the error bar
// up to p99.
type latencyPoints struct {
	plotter.XYs
	plotter.YErrors
}

func latencyPlot(results []strategyResult, md mode) (*plot.Plot, error) {
	p := newPlot()
	if md == blockable {
		p.Title.Text = "Invalidation latency, blockable (munmap, mprotect)"
	} else {
		p.Title.Text = "Invalidation latency, non-blockable (OOM reaper; the bug is not measured there)"
	}
	// In the title, not as the axis label: gonum centres an axis label at
	// the linear midpoint of the range, near the top of a log axis, and
	// shrinks the plot to fit it there.
	p.Title.Text += "\nµs, log scale: dot p50, bar up to p99"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())

	var names []string
	condIndex := map[string]int{}
	for _, c := range conditions {
		for _, r := range results {
			if r.ConditionKey == c.key {
				condIndex[c.key] = len(names)
				names = append(names, c.name)
				break
			}
		}
	}
	if len(names) == 0 {
		return p, nil
	}
	lo, hi := 1e18, 0.0
	var missing []string
	for si, s := range strategies {
		var pts latencyPoints
		for _, r := range results {
			m := r.Modes[md]
			if r.StrategyKey != s.key || !m.Shown {
				continue
			}
			if m.Invalidations == 0 {
				missing = append(missing, fmt.Sprintf("%s under %s", s.name(), r.Condition))
				continue
			}
			// Strategies side by side, centred on their condition.
			x := float64(condIndex[r.ConditionKey]) + (float64(si)-float64(len(strategies)-1)/2)*0.75/float64(len(strategies))
			p50, p99 := max(m.P50us, 0.01), max(m.P99us, 0.01)
			pts.XYs = append(pts.XYs, plotter.XY{X: x, Y: p50})
			pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{0, max(p99-p50, 0)})
			lo, hi = min(lo, p50), max(hi, p99)
		}
		if len(pts.XYs) == 0 {
			continue
		}
		col := strategyColors[si%len(strategyColors)]
		bars, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return nil, err
		}
		bars.LineStyle.Color = col
		bars.LineStyle.Width = vg.Points(2)
		bars.CapWidth = vg.Points(5)
		dots, err := plotter.NewScatter(pts.XYs)
		if err != nil {
			return nil, err
		}
		dots.GlyphStyle = draw.GlyphStyle{Color: col, Radius: vg.Points(3.5), Shape: draw.CircleGlyph{}}
		p.Add(bars, dots)
		p.Legend.Add(s.name(), dots)
	}
	p.NominalX(names...)
	if len(missing) > 0 {
		p.X.Label.Text = "no callback completed: " + strings.Join(missing, "; ")
		p.X.Label.TextStyle.Font.Size = vg.Points(9)
	}
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
	if hi > 0 {
		p.Y.Min, p.Y.Max = lo/2, hi*20 // room at the top for the legend, six lines high
	}
	p.Legend.Top = true
	p.Legend.Padding = vg.Points(1)
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	return p, nil
}
