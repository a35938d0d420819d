from quantdesk.cli import main

raise SystemExit(main())
