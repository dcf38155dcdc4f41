"""One module per `tm` subcommand: add_arguments(parser) and run(args) -> int. Heavy imports go in run()."""
