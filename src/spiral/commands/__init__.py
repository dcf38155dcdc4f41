"""One module per `spiral` subcommand: add_arguments(parser) and run(args) -> int. Heavy imports go in run()."""
