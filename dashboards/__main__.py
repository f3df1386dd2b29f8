"""`python -m dashboards`: regenerate the committed rule YAML and dashboard JSON."""

from dashboards.main import main

raise SystemExit(main())
