from engine.cli.main import main

raise SystemExit(main())  # the command's exit status, as the `automlp` script gives it
