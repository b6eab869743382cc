from pmtrec.cli import main

raise SystemExit(main())
