from reference.mutants.run import main

raise SystemExit(main())
