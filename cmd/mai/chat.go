package main

import (
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/serve"
)

func init() {
	var o serve.ChatOptions
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "Chat with a model in the terminal",
		Long: `Chat with a served model (--url) or a model folder loaded here (--model).
Replies stream as they are generated; the conversation is kept.
Commands: /reset clears the history, /system TEXT sets the system prompt, /exit quits.`,
		Example: `  mai chat --url http://127.0.0.1:8080 --model tiny
  mai chat --model runs/chat-sft`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.URL == "" {
				if o.Model == "" {
					return fmt.Errorf("give --url of a server, or --model with a model folder")
				}
				o.Dir, o.Model = o.Model, ""
			}
			if o.APIKey == "" {
				o.APIKey = os.Getenv("MAI_API_KEY")
			}
			o.In, o.Out = cmd.InOrStdin(), cmd.OutOrStdout()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return serve.Chat(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "", "base URL of a MAI (or any OpenAI-compatible) server")
	f.StringVar(&o.Model, "model", "", "with --url: the model name; without: a model folder to load")
	f.StringVar(&o.APIKey, "api-key", "", "API key (also $MAI_API_KEY)")
	f.StringVar(&o.System, "system", "", "system prompt")
	f.Float64Var(&o.Temperature, "temperature", 0.7, "sampling temperature")
	f.IntVar(&o.MaxTokens, "max-tokens", 512, "longest reply in tokens")
	rootCmd.AddCommand(cmd)
}
