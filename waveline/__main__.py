from waveline.cli.main import main

raise SystemExit(main())
