package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets every flag named in a YAML file (keys are flag names,
// with - or _) unless the flag was given on the command line, as Megatron and
// torchtitan users are used to.
func applyConfigFile(cmd *cobra.Command, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var kv map[string]any
	if err := yaml.Unmarshal(b, &kv); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for k, v := range kv {
		name := strings.ReplaceAll(k, "_", "-")
		f := cmd.Flags().Lookup(name)
		if f == nil {
			return fmt.Errorf("config file %s: unknown setting %q (see mai %s --help)", path, k, cmd.Name())
		}
		if f.Changed {
			continue
		}
		var s string
		switch x := v.(type) {
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = fmt.Sprint(e)
			}
			s = strings.Join(parts, ",")
		default:
			s = fmt.Sprint(x)
		}
		if err := cmd.Flags().Set(name, s); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// configFlag adds --config and applies it before the command runs.
func configFlag(cmd *cobra.Command) {
	cmd.Flags().String("config", "", "YAML file of flag values (command-line flags win)")
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if p, _ := c.Flags().GetString("config"); p != "" {
			if err := applyConfigFile(c, p); err != nil {
				return err
			}
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}

var _ = pflag.ContinueOnError
