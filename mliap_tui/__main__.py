from mliap_tui.cli import main

raise SystemExit(main())
