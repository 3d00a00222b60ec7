package eval

import (
	"fmt"
	"image/color"
	"os"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot draws series as a PNG: one panel per metric, one line per run, the
// training step on the x axis.
func Plot(path, title string, ss []Series) error {
	var metrics []string
	byMetric := map[string][]Series{}
	for _, s := range ss {
		if len(s.Steps) == 0 {
			continue
		}
		if _, ok := byMetric[s.Metric]; !ok {
			metrics = append(metrics, s.Metric)
		}
		byMetric[s.Metric] = append(byMetric[s.Metric], s)
	}
	if len(metrics) == 0 {
		return fmt.Errorf("plot: no data")
	}
	sort.SliceStable(metrics, func(i, j int) bool { return metrics[i] < metrics[j] })
	cols := min(3, len(metrics))
	rows := (len(metrics) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for i, m := range metrics {
		p := plot.New()
		p.Title.Text = m
		p.X.Label.Text = "step"
		p.Add(plotter.NewGrid())
		if isFraction(m) {
			p.Y.Min, p.Y.Max = 0, 1
		}
		if c := byMetric[m][0].Chance; c > 0 {
			first, last := byMetric[m][0].Steps[0], byMetric[m][0].Steps[len(byMetric[m][0].Steps)-1]
			l, err := plotter.NewLine(plotter.XYs{{X: first, Y: c}, {X: last, Y: c}})
			if err == nil {
				l.Color = color.Gray{Y: 128}
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
				p.Add(l)
				p.Legend.Add("chance", l)
			}
		}
		for k, s := range byMetric[m] {
			pts := make(plotter.XYs, len(s.Steps))
			for j := range s.Steps {
				pts[j].X, pts[j].Y = s.Steps[j], s.Values[j]
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return fmt.Errorf("plot %s: %w", m, err)
			}
			line.Color = plotutil.Color(k)
			points.Color = plotutil.Color(k)
			points.Shape = draw.CircleGlyph{}
			p.Add(line, points)
			if len(byMetric[m]) > 1 || s.Chance > 0 {
				p.Legend.Add(s.Run, line, points)
			}
		}
		plots[i/cols][i%cols] = p
	}
	const w, h = 5 * vg.Inch, 3.5 * vg.Inch
	img := vgimg.New(vg.Length(cols)*w, vg.Length(rows)*h+0.4*vg.Inch)
	dc := draw.New(img)
	if title != "" {
		top := plot.New()
		top.Title.Text = title
		top.HideAxes()
		dc2 := dc
		dc2.Min.Y = dc.Max.Y - 0.4*vg.Inch
		top.Draw(dc2)
		dc.Max.Y -= 0.4 * vg.Inch
	}
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		for j := range plots[i] {
			if plots[i][j] != nil {
				plots[i][j].Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}

// isFraction reports whether a metric is a rate in [0, 1], plotted on that
// scale so that noise does not look like progress.
func isFraction(metric string) bool {
	for _, s := range []string{"/acc", "/acc_norm", "/exact_match", "/pass@"} {
		if strings.Contains(metric, s) {
			return true
		}
	}
	return false
}
