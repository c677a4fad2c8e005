package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// runReport is what the run writes as JSON: every figure with its baseline,
// and the machine it ran on.
type runReport struct {
	When      time.Time      `json:"when"`
	GoVersion string         `json:"go_version"`
	GOOS      string         `json:"goos"`
	GOARCH    string         `json:"goarch"`
	CPUs      int            `json:"cpus"`
	Quick     bool           `json:"quick"`
	Figures   []figureResult `json:"figures"`
}

type figureResult struct {
	Name          string   `json:"name"`
	Baseline      string   `json:"baseline"`
	BaselineNs    float64  `json:"baseline_ns_per_op"`
	KrulesNs      float64  `json:"krules_ns_per_op"`
	Ratio         float64  `json:"ratio"`
	Target        float64  `json:"target_ratio,omitempty"`
	KrulesAllocs  int64    `json:"krules_allocs_per_op"`
	BaselineAlloc int64    `json:"baseline_allocs_per_op"`
	Missed        []string `json:"missed,omitempty"`
}

func newRunReport(rows []row, quick bool) runReport {
	rep := runReport{
		When: time.Now().UTC(), GoVersion: runtime.Version(), GOOS: runtime.GOOS,
		GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), Quick: quick,
	}
	for _, r := range rows {
		rep.Figures = append(rep.Figures, figureResult{
			Name: r.Name, Baseline: r.Baseline,
			BaselineNs: nsPerOp(r.base), KrulesNs: nsPerOp(r.rules), Ratio: r.ratio(), Target: r.Target,
			KrulesAllocs: r.rules.AllocsPerOp(), BaselineAlloc: r.base.AllocsPerOp(), Missed: r.missed(),
		})
	}
	return rep
}

// writeOutputs writes results.json and the charts into dir, returning the
// files written.
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
	if len(rep.Figures) > 0 {
		path = filepath.Join(dir, "overhead-ratios.svg")
		if err := ratioChart(path, rep.Figures); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

// ratioChart draws each figure's krules/baseline ratio as a bar, with its
// target as a second bar beside it.
func ratioChart(path string, figs []figureResult) error {
	p := plot.New()
	p.Title.Text = "The price of the rules: krules time / baseline time"
	p.Y.Label.Text = "ratio (lower is better)"
	measured := make(plotter.Values, len(figs))
	targets := make(plotter.Values, len(figs))
	names := make([]string, len(figs))
	for i, f := range figs {
		measured[i], targets[i], names[i] = f.Ratio, f.Target, f.Name
	}
	w := vg.Points(12)
	mb, err := plotter.NewBarChart(measured, w)
	if err != nil {
		return err
	}
	mb.Color = plotter.DefaultLineStyle.Color
	mb.Offset = -w / 2
	tb, err := plotter.NewBarChart(targets, w)
	if err != nil {
		return err
	}
	tb.LineStyle.Width = vg.Points(1)
	tb.Color = nil
	tb.Offset = w / 2
	p.Add(mb, tb)
	p.Legend.Add("measured", mb)
	p.Legend.Add("target (0 = none)", tb)
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.6
	p.X.Tick.Label.XAlign = -1
	p.X.Tick.Label.YAlign = -0.5
	width := vg.Length(60+40*len(figs)) * vg.Millimeter / 4
	if width < 16*vg.Centimeter {
		width = 16 * vg.Centimeter
	}
	if err := p.Save(width, 12*vg.Centimeter, path); err != nil {
		return fmt.Errorf("ratio chart: %w", err)
	}
	return nil
}
