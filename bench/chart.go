package main

import (
	"fmt"
	"image/color"
	"os"
	"strings"

	xfont "golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Every chart is laid out and drawn with the Go fonts
// (golang.org/x/image/font/gofont), which each SVG embeds and each PNG is
// rasterised with: text measured with one font and shown with another
// (whatever the viewer has installed) overlaps the bars.
var (
	chartTypeface = font.Typeface("Go")
	chartText     = text.Plain{Fonts: font.NewCache(goFonts())}
)

func goFonts() font.Collection {
	parse := func(ttf []byte) *opentype.Font {
		f, err := opentype.Parse(ttf)
		if err != nil {
			panic(fmt.Sprintf("bench: the Go fonts do not parse: %v", err))
		}
		return f
	}
	return font.Collection{
		{Font: font.Font{Typeface: chartTypeface}, Face: parse(goregular.TTF)},
		{Font: font.Font{Typeface: chartTypeface, Weight: xfont.WeightBold}, Face: parse(gobold.TTF)},
	}
}

// chartFont is the Go font at size points.
func chartFont(size vg.Length) font.Font {
	return font.Font{Typeface: chartTypeface, Size: size}
}

// newPlot is plot.New with every text style set to the chart font.
func newPlot() *plot.Plot {
	p := plot.New()
	p.TextHandler = chartText
	for _, st := range []*text.Style{
		&p.Title.TextStyle, &p.X.Label.TextStyle, &p.Y.Label.TextStyle,
		&p.X.Tick.Label, &p.Y.Tick.Label, &p.Legend.TextStyle,
	} {
		st.Handler = chartText
		st.Font = chartFont(st.Font.Size)
	}
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Title.Padding = vg.Points(6)
	return p
}

// writeChart draws a chart of size w×h with drawFn into path (SVG, fonts
// embedded) and beside it into the same name with .png (96 dpi), and
// returns the files written.
func writeChart(path string, w, h vg.Length, drawFn func(draw.Canvas)) ([]string, error) {
	svg := vgsvg.NewWith(vgsvg.UseWH(w, h), vgsvg.EmbedFonts(true))
	drawFn(draw.New(svg))
	if err := writeCanvas(path, svg); err != nil {
		return nil, err
	}
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96), vgimg.UseBackgroundColor(color.White))
	drawFn(draw.New(img))
	png := strings.TrimSuffix(path, ".svg") + ".png"
	if err := writeCanvas(png, vgimg.PngCanvas{Canvas: img}); err != nil {
		return []string{path}, err
	}
	return []string{path, png}, nil
}

// writeCanvas writes a drawn canvas to path.
func writeCanvas(path string, c vg.CanvasWriterTo) error {
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
