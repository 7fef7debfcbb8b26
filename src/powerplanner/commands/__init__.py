"""Sub-commands of the ``powerplanner`` CLI, one module each, registered by ``cli.build_app``.
Heavy imports happen inside the command functions so ``powerplanner --help`` stays fast."""
