"""One module per verb; each exposes COMMAND (an args.Command) and main(ctx, parsed)."""
