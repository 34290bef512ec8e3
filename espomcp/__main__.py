from espomcp.cli import main

raise SystemExit(main())
