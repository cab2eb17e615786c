from mantra6g.cli import main

raise SystemExit(main())
