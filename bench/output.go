package main

import (
	"encoding/json"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// runReport is what the run writes as JSON: every figure with its baseline,
// and the machine it ran on.
type runReport struct {
	When      time.Time      `json:"when"`
	GoVersion string         `json:"go_version"`
	GOOS      string         `json:"goos"`
	GOARCH    string         `json:"goarch"`
	CPUModel  string         `json:"cpu_model"`
	CPUs      int            `json:"cpus"`
	Quick     bool           `json:"quick"`
	Figures   []figureResult `json:"figures"`
	// Workload and Strategies are the strategy report's runs.
	Workload   *workloadReport  `json:"workload,omitempty"`
	Strategies []strategyResult `json:"strategies,omitempty"`
}

type figureResult struct {
	Name          string   `json:"name"`
	Baseline      string   `json:"baseline"`
	BaselineNs    float64  `json:"baseline_ns_per_op"`
	KrulesNs      float64  `json:"krules_ns_per_op"`
	Ratio         float64  `json:"ratio"`
	Target        float64  `json:"target_ratio,omitempty"`
	OverNsTarget  float64  `json:"target_ns_over_per_unit,omitempty"`
	OverNs        float64  `json:"ns_over_per_unit,omitempty"`
	Unit          string   `json:"unit,omitempty"`
	Units         int      `json:"units,omitempty"`
	KrulesAllocs  int64    `json:"krules_allocs_per_op"`
	BaselineAlloc int64    `json:"baseline_allocs_per_op"`
	Missed        []string `json:"missed,omitempty"`
	// The longest sampled waits of a contended figure (fairness), in ns.
	BaselineMaxWaitNs float64 `json:"baseline_max_wait_ns,omitempty"`
	KrulesMaxWaitNs   float64 `json:"krules_max_wait_ns,omitempty"`
}

func newRunReport(rows []row, quick bool, cpu string) runReport {
	rep := runReport{
		When: time.Now().UTC(), GoVersion: runtime.Version(), GOOS: runtime.GOOS,
		GOARCH: runtime.GOARCH, CPUModel: cpu, CPUs: runtime.NumCPU(), Quick: quick,
	}
	for _, r := range rows {
		rep.Figures = append(rep.Figures, figureResult{
			Name: r.Name, Baseline: r.Baseline,
			BaselineNs: nsPerOp(r.base), KrulesNs: nsPerOp(r.rules), Ratio: r.ratio(), Target: r.Target,
			KrulesAllocs: r.rules.AllocsPerOp(), BaselineAlloc: r.base.AllocsPerOp(), Missed: r.missed(),
		})
		if base, rules, ok := r.maxWaits(); ok {
			f := &rep.Figures[len(rep.Figures)-1]
			f.BaselineMaxWaitNs, f.KrulesMaxWaitNs = base, rules
		}
		if r.OverNs > 0 {
			f := &rep.Figures[len(rep.Figures)-1]
			f.OverNsTarget, f.OverNs, f.Unit, f.Units = r.OverNs, r.overPerUnit(), r.Unit, max(r.Units, 1)
		}
	}
	return rep
}

// writeOutputs writes results.json and the charts (each as SVG and PNG)
// into dir, returning the files written.
func writeOutputs(dir string, rep runReport) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "results.json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	files = append(files, path)
	if len(rep.Strategies) > 0 {
		written, err := latencyChart(filepath.Join(dir, "strategy-latency.svg"), rep.Strategies)
		files = append(files, written...)
		if err != nil {
			return files, err
		}
	}
	if len(rep.Figures) > 0 {
		written, err := ratioChart(filepath.Join(dir, "overhead-ratios.svg"), rep.Figures)
		files = append(files, written...)
		if err != nil {
			return files, err
		}
		written, err = fairnessChart(filepath.Join(dir, "contended-max-wait.svg"), rep.Figures)
		files = append(files, written...)
		if err != nil {
			return files, err
		}
	}
	return files, nil
}

var (
	measuredColor = color.RGBA{R: 0x3b, G: 0x6e, B: 0xb5, A: 0xff}
	targetColor   = color.RGBA{R: 0xd0, G: 0x20, B: 0x20, A: 0xff}
)

// ratioChart draws each figure's krules/baseline ratio as a horizontal bar
// from 1 (as fast as the baseline) on a logarithmic axis, so that 0.03×
// and 16× both show, with the figure's target as a red mark: a square for
// a ratio target, a diamond for a budget in ns over the baseline (drawn at
// the ratio the budget allows in this run).
func ratioChart(path string, figs []figureResult) ([]string, error) {
	p, err := ratioPlot(figs)
	if err != nil {
		return nil, err
	}
	height := vg.Length(len(figs)+2)*vg.Points(22) + 3*vg.Centimeter
	return writeChart(path, 24*vg.Centimeter, height, func(c draw.Canvas) {
		p.Draw(draw.Crop(c, vg.Points(4), -vg.Points(12), vg.Points(4), -vg.Points(4)))
	})
}

// targetRatio is the ratio a figure's target allows: its ratio target, or
// its budget over the baseline as a ratio of this run's baseline.
func (f figureResult) targetRatio() (float64, bool) {
	switch {
	case f.OverNsTarget > 0 && f.BaselineNs > 0:
		return 1 + f.OverNsTarget*float64(max(f.Units, 1))/f.BaselineNs, true
	case f.Target > 0:
		return f.Target, true
	}
	return 0, false
}

func ratioPlot(figs []figureResult) (*plot.Plot, error) {
	p := newPlot()
	// No axis label: gonum centres it at the linear midpoint of the
	// range, far right on a log axis, and shrinks the plot to fit it.
	p.Title.Text = "The price of the rules: krules time / baseline time\n" +
		"(log scale: 1× is as fast as the baseline, left of it is faster)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = ratioTicks{}
	names := make([]string, len(figs))
	bars := ratioBars{height: vg.Points(12)}
	var ratioTargets, budgetTargets plotter.XYs
	lo, hi := 1.0, 1.0
	// The first figure on top, in the table's order.
	for i, f := range slices.Backward(figs) {
		names[len(figs)-1-i] = f.Name
		r := max(f.Ratio, 1e-3)
		bars.values = append(bars.values, r)
		lo, hi = min(lo, r), max(hi, r)
		if t, ok := f.targetRatio(); ok {
			pt := plotter.XY{X: t, Y: float64(len(figs) - 1 - i)}
			if f.OverNsTarget > 0 {
				budgetTargets = append(budgetTargets, pt)
			} else {
				ratioTargets = append(ratioTargets, pt)
			}
			lo, hi = min(lo, t), max(hi, t)
		}
	}
	p.Add(plotter.NewGrid(), bars)
	p.Legend.Add("measured", bars)
	for _, t := range []struct {
		pts   plotter.XYs
		shape draw.GlyphDrawer
		label string
	}{
		{ratioTargets, draw.BoxGlyph{}, "target ratio"},
		{budgetTargets, draw.PyramidGlyph{}, "target +N ns a call, as a ratio"},
	} {
		if len(t.pts) == 0 {
			continue
		}
		marks, err := plotter.NewScatter(t.pts)
		if err != nil {
			return nil, err
		}
		marks.GlyphStyle = draw.GlyphStyle{Color: targetColor, Radius: vg.Points(4), Shape: t.shape}
		p.Add(marks)
		p.Legend.Add(t.label, marks)
	}
	p.NominalY(names...)
	// Two empty rows above the figures hold the legend, clear of the bars.
	p.Y.Min, p.Y.Max = -0.6, float64(len(figs))+1.4
	p.X.Min, p.X.Max = lo/1.6, hi*1.6
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Points(8)
	p.Legend.YOffs = -vg.Points(4)
	return p, nil
}

// ratioBars are horizontal bars from 1 to each value, one a row.
type ratioBars struct {
	values []float64
	height vg.Length
}

func (b ratioBars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	x1 := trX(1)
	for i, v := range b.values {
		x, y := trX(v), trY(float64(i))
		rect := vg.Rectangle{Min: vg.Point{X: min(x, x1), Y: y - b.height/2}, Max: vg.Point{X: max(x, x1), Y: y + b.height/2}}
		c.SetColor(measuredColor)
		c.Fill(rect.Path())
	}
	// The baseline: where a bar starts.
	c.StrokeLine2(draw.LineStyle{Color: color.Black, Width: vg.Points(1)}, x1, c.Min.Y, x1, c.Max.Y)
}

func (b ratioBars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = 1, 1
	for _, v := range b.values {
		xmin, xmax = min(xmin, v), max(xmax, v)
	}
	return xmin, xmax, 0, float64(len(b.values) - 1)
}

// Thumbnail draws the legend's swatch.
func (b ratioBars) Thumbnail(c *draw.Canvas) {
	c.SetColor(measuredColor)
	pts := []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Min.X, Y: c.Max.Y}}
	c.FillPolygon(measuredColor, c.ClipPolygonXY(pts))
}

// ratioTicks labels a log ratio axis at 1, 2 and 5 times the powers of
// ten, with the powers of ten as major ticks: "0.05×", "1×", "20×".
type ratioTicks struct{}

func (ratioTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64) + "×"})
		}
	}
	return ticks
}
