package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
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
	KrulesAllocs  int64    `json:"krules_allocs_per_op"`
	BaselineAlloc int64    `json:"baseline_allocs_per_op"`
	Missed        []string `json:"missed,omitempty"`
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
		if r.OverNs > 0 {
			f := &rep.Figures[len(rep.Figures)-1]
			f.OverNsTarget, f.OverNs, f.Unit = r.OverNs, r.overPerUnit(), r.Unit
		}
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
	if len(rep.Strategies) > 0 {
		path = filepath.Join(dir, "strategy-latency.svg")
		if err := latencyChart(path, rep.Strategies); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	if len(rep.Figures) > 0 {
		path = filepath.Join(dir, "overhead-ratios.svg")
		if err := ratioChart(path, rep.Figures); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

// ratioChart draws each figure's krules/baseline ratio as a horizontal bar,
// with the figure's target (when it has one) as a red mark on the bar.
func ratioChart(path string, figs []figureResult) error {
	p, err := ratioPlot(figs)
	if err != nil {
		return err
	}
	height := vg.Length(len(figs))*vg.Points(26) + 4*vg.Centimeter
	return saveSVG(p, 20*vg.Centimeter, height, path)
}

func ratioPlot(figs []figureResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "The price of the rules: krules time / baseline time"
	p.X.Label.Text = "ratio (1 = as fast as the baseline; lower is better)"
	p.X.Min = 0
	measured := make(plotter.Values, len(figs))
	names := make([]string, len(figs))
	var targets plotter.XYs
	for i, f := range figs {
		measured[i], names[i] = f.Ratio, f.Name
		if f.Target > 0 {
			targets = append(targets, plotter.XY{X: f.Target, Y: float64(i)})
		}
	}
	bars, err := plotter.NewBarChart(measured, vg.Points(14))
	if err != nil {
		return nil, err
	}
	bars.Horizontal = true
	bars.Color = color.RGBA{R: 0x3b, G: 0x6e, B: 0xb5, A: 0xff}
	bars.LineStyle.Width = 0
	p.Add(bars, plotter.NewGrid())
	p.Legend.Add("measured", bars)
	if len(targets) > 0 {
		marks, err := plotter.NewScatter(targets)
		if err != nil {
			return nil, err
		}
		marks.GlyphStyle.Shape = draw.BoxGlyph{}
		marks.GlyphStyle.Color = color.RGBA{R: 0xd0, G: 0x20, B: 0x20, A: 0xff}
		marks.GlyphStyle.Radius = vg.Points(4)
		p.Add(marks)
		p.Legend.Add("target", marks)
	}
	p.NominalY(names...)
	// Room on the right for the legend, clear of the longest bar.
	top := 1.0
	for _, f := range figs {
		top = max(top, f.Ratio, f.Target)
	}
	p.X.Max = top * 1.35
	p.Legend.Top = true
	return p, nil
}

// saveSVG writes p as SVG. Text is laid out with Liberation Serif, which
// the SVG names rather than embeds (embedding costs half a megabyte); it is
// metric-compatible with Times New Roman, the serif viewers fall back to.
func saveSVG(p *plot.Plot, w, h vg.Length, path string) error {
	c := vgsvg.NewWith(vgsvg.UseWH(w, h))
	p.Draw(draw.New(c))
	return writeCanvas(c, path)
}

// writeCanvas writes a drawn SVG canvas to path.
func writeCanvas(c *vgsvg.Canvas, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
