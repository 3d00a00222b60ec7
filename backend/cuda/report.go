package cuda

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
)

// Report is what Probe found: each library (where from, or why not), the
// driver and the devices.
type Report struct {
	Libraries     []LibStatus  `json:"libraries"`
	DriverVersion int          `json:"driver_version,omitempty"` // e.g. 13000; 0 when the driver did not load
	Devices       []DeviceInfo `json:"devices"`
	NVRTCArchs    []int        `json:"nvrtc_archs,omitempty"` // architectures NVRTC compiles for
	Problems      []string     `json:"problems,omitempty"`    // what is missing or failed, with how to fix it
}

// LibStatus is one library's outcome.
type LibStatus struct {
	Name    string `json:"name"`
	What    string `json:"what"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	Extra   string `json:"extra,omitempty"` // e.g. the NVRTC builtins pre-opened
	Error   string `json:"error,omitempty"`
	err     error
}

// OK reports whether a device was found and every required library loaded.
func (r *Report) OK() bool { return len(r.Devices) > 0 && len(r.Problems) == 0 }

// Write prints the report for people.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "platform      %s/%s\n", runtime.GOOS, runtime.GOARCH)
	for _, l := range r.Libraries {
		switch {
		case l.Path != "":
			fmt.Fprintf(&b, "%-13s %s", l.Name, l.Path)
			if l.Version != "" {
				fmt.Fprintf(&b, " (%s)", l.Version)
			}
			if l.Extra != "" {
				fmt.Fprintf(&b, "; %s", l.Extra)
			}
			b.WriteByte('\n')
		case errors.Is(l.err, ErrLibraryNotFound):
			fmt.Fprintf(&b, "%-13s not found\n", l.Name)
		case l.Error != "":
			fmt.Fprintf(&b, "%-13s failed: %s\n", l.Name, firstLine(l.Error))
		default:
			fmt.Fprintf(&b, "%-13s not looked for\n", l.Name)
		}
	}
	if r.DriverVersion > 0 {
		fmt.Fprintf(&b, "driver        supports CUDA %d.%d\n", r.DriverVersion/1000, r.DriverVersion%1000/10)
	}
	for _, d := range r.Devices {
		fmt.Fprintf(&b, "device %-6d %s, sm_%d, %d SMs, %.1f GiB", d.Ordinal, d.Name, d.SM, d.SMs, gib(d.Memory))
		if d.FreeMemory > 0 {
			fmt.Fprintf(&b, " (%.1f GiB free)", gib(d.FreeMemory))
		}
		if d.Arch > 0 && d.Arch != d.SM {
			fmt.Fprintf(&b, "; kernels compile for sm_%d", d.Arch)
		}
		b.WriteByte('\n')
	}
	if len(r.NVRTCArchs) > 0 {
		fmt.Fprintf(&b, "nvrtc archs   %s\n", archList(r.NVRTCArchs))
	}
	if len(r.Problems) > 0 {
		b.WriteString("\nproblems:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	} else if len(r.Devices) > 0 {
		b.WriteString("\nready: `--device cuda` will use device 0\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func archList(a []int) string {
	s := make([]string, len(a))
	for i, v := range a {
		s[i] = fmt.Sprintf("sm_%d", v)
	}
	return strings.Join(s, " ")
}
