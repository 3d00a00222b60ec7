package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/backend/cuda"
)

func init() {
	gpu := &cobra.Command{
		Use:   "gpu",
		Short: "Inspect the NVIDIA GPU backend",
	}
	var asJSON, require bool
	info := &cobra.Command{
		Use:   "info",
		Short: "Show the CUDA driver, devices and libraries found (or what is missing and how to install it)",
		Example: `  mai gpu info
  mai gpu info --json
  MAI_LIBNVRTC=/opt/cuda/lib64/libnvrtc.so.13 mai gpu info`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := cuda.Probe()
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else if err := r.Write(os.Stdout); err != nil {
				return err
			}
			if require && !r.OK() {
				return fmt.Errorf("gpu info: no usable GPU (see the problems above)")
			}
			return nil
		},
	}
	info.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	info.Flags().BoolVar(&require, "require", false, "exit with status 1 unless a device and every required library were found")
	gpu.AddCommand(info)
	rootCmd.AddCommand(gpu)
}
