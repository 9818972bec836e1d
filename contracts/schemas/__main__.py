"""``python -m contracts.schemas``: regenerate the JSON Schemas and the AsyncAPI document."""

from contracts.generate import main

raise SystemExit(main())
